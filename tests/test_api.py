"""The Python API (`import seqbench`): the commands as functions with records and DataFrames back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import seqbench
from seqbench.errors import InputError

SMALL = {"batch_size": 32, "max_len": 10, "eval_batch_size": 64}


def test_import_seqbench_stays_light() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys, seqbench; print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert {"prepare", "train", "compare", "tune", "profile_memory", "runs"} <= set(dir(seqbench))


def test_train_compare_and_runs_from_python(toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    record = seqbench.train(dataset="toy", model="gru4rec", loss="bce", epochs=1, data_dir=toy_data, results=results, **SMALL)
    assert record["kind"] == "run" and record["status"] == "completed" and len(record["epochs"]) == 1

    result = seqbench.compare(datasets="toy", models="gru4rec", losses="bce,cce", seeds=[0, 1], epochs=1,
                              sets=SMALL, data_dir=toy_data, results=results)
    grid = result.tables["grid"]
    assert isinstance(grid.cells, pd.DataFrame) and set(grid.cells["loss"]) >= {"bce", "cce"} and result.incomplete == []
    assert result.document["kind"] == "compare" and result.verdicts
    stored = seqbench.runs(results)
    # The run trained by `train` has the grid's config for seed 0, so the grid reused it: 4 runs, not 5.
    assert sorted(stored["loss"]) == ["bce", "bce", "cce", "cce"] and set(stored["status"]) == {"completed"}
    assert record["run_id"] in set(stored["run_id"])


def test_prepare_your_own_table_and_profile_memory(tmp_path: Path) -> None:
    rows = [(f"u{u}", f"i{(u + t) % 30}", t) for u in range(60) for t in range(8)]
    pd.DataFrame(rows, columns=["who", "what", "when"]).to_csv(tmp_path / "log.csv", index=False)
    stats = seqbench.prepare("mine", from_file=tmp_path / "log.csv", data_dir=tmp_path / "data", user="who", item="what", timestamp="when")
    assert (stats["users"], stats["items"], stats["status"]) == (60, 30, "prepared")
    peaks = seqbench.profile_memory("cce,cce[chunked]", "1000", batch_size=8, max_len=5)
    assert list(peaks["loss"]) == ["cce", "cce[chunked]"] and (peaks["peak_bytes"] > 0).all()


def test_bad_input_raises_input_error(toy_data: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown loss"):
        seqbench.train(dataset="toy", loss="nonsense", data_dir=toy_data, results=tmp_path)
    with pytest.raises(InputError, match="needs a data set name"):
        seqbench.prepare()


def test_tune_from_python(toy_data: Path, tmp_path: Path) -> None:
    report = seqbench.tune("toy", "gru4rec", "bce", trials=2, epochs=1, sets=SMALL, data_dir=toy_data, results=tmp_path)
    assert list(report.budget["loss"]) == ["bce"] and int(report.budget["trials"].iloc[0]) == 2
    assert set(report.studies) == {"bce"}


def test_a_loss_with_bracketed_options_is_the_same_run_as_set(toy_data: Path, tmp_path: Path) -> None:
    common = {"data_dir": toy_data, "results": tmp_path, "dataset": "toy", "model": "gru4rec", "epochs": 0, **SMALL}
    spec = seqbench.train(loss="cce[chunked]", **common)
    assert spec["config"]["loss"] == "cce" and spec["config"]["loss_params"] == {"ce_impl": "chunked"}
    assert seqbench.train(loss="cce", ce_impl="chunked", **common)["run_id"] == spec["run_id"]
    assert seqbench.train(loss="cce", **common)["run_id"] != spec["run_id"]  # a bare name keeps auto
    # An explicit setting wins over the bracket.
    assert seqbench.train(loss="cce[dense]", ce_impl="chunked", **common)["run_id"] == spec["run_id"]
