"""Figures: written as valid PNG/PDF files of non-trivial size, from stores with known runs."""

from __future__ import annotations

import numpy as np
import pytest
from reporting_store import curve, new_store, run_row, write

from seqbench.errors import InputError
from seqbench.reporting import write_figures
from seqbench.reporting.figures import per_timestamp_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_image(path) -> None:
    data = path.read_bytes()
    if path.suffix == ".png":
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 5_000
    else:
        assert data[:5] == b"%PDF-"


@pytest.fixture()
def store(tmp_path):
    store = new_store(tmp_path)
    for d, dataset in enumerate(["lastfm", "beauty"]):
        for m, model in enumerate(["gru4rec", "sasrec"]):
            for l, loss in enumerate(["bce", "ce", "cce"]):
                for seed in range(2):
                    value = 0.05 + 0.04 * l + 0.01 * m + 0.005 * seed
                    row = run_row(f"{dataset}-{model}-{loss}-{seed}", dataset, model, loss, seed, {"NDCG@10": value},
                                  memory=(40 + 150 * l + 20 * m) * 2**20 * (1 + d), train_seconds=20 + 15 * l,
                                  ce_impl="chunked" if loss == "cce" and seed else "")
                    write(store, row, epochs=curve(value, row["train_seconds"], test=dataset == "lastfm"))
    return store


def test_write_figures_writes_valid_png_and_pdf(store, tmp_path):
    per_timestamp = {f"sasrec {loss}": [{"position": t, "NDCG@10": level * np.log1p(t)} for t in range(1, 51)]
                     for loss, level in (("bce", 0.01), ("cce", 0.03))}
    paths = write_figures(store, store.table(), tmp_path / "plots", per_timestamp=per_timestamp)
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{stem}.{ext}" for stem in ("frontier", "ndcg_vs_time_beauty", "ndcg_vs_time_lastfm", "per_timestamp")
                           for ext in ("png", "pdf"))
    for path in paths:
        assert path.is_file()
        check_image(path)


def test_figures_need_completed_runs_and_skip_empty_inputs(tmp_path):
    empty = new_store(tmp_path)
    with pytest.raises(InputError):
        write_figures(empty, empty.table(), tmp_path / "plots")
    assert per_timestamp_figure({"x": []}, tmp_path / "plots" / "pt") == []
