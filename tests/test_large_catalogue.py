"""Large catalogues: a run's measured CPU peak is the memory profiler's figure for the same step."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import seqbench
from seqbench.memprof.profile import profile_step

ITEMS = 100_000


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("catalogue") / "data"
    seqbench.prepare(name="synthetic", data_dir=folder, items=ITEMS, users=40, length=8, catalog="full")
    return folder


def test_a_runs_cpu_peak_is_what_memprof_predicts_when_the_catalogue_dominates(data_dir: Path, tmp_path: Path) -> None:
    # 100,000 items x d 16: weights, Adam's moments and gradients (~32 MB) dwarf the activations of
    # batches of 8 x 6, so the trainer's tracked peak and memprof's step must agree closely. The
    # trainer once counted the weights and Adam's state twice (in-place updates looked new): +33%.
    items, batch, length, hidden = ITEMS, 8, 6, 16
    record = seqbench.train(data_dir=data_dir, results=tmp_path / "results", dataset="synthetic", model="sasrec",
                            loss="sampled-ce", epochs=1, batch_size=batch, max_len=length, hidden_size=hidden, threads=1)
    assert record["training"]["num_items"] == items
    measured = record["training"]["peak_memory_bytes"]
    predicted = profile_step("sasrec", "sampled-ce", items, batch, length, hidden, mode="predict").peak_bytes
    assert predicted is not None
    assert abs(measured / predicted - 1) < 0.05, (measured, predicted)


def test_a_dense_ce_that_cannot_fit_is_refused_before_training_with_the_predicted_memory(data_dir: Path, tmp_path: Path) -> None:
    # 4096 x 200 positions x 100,000 items: 328 GB of logits alone.
    command = ["seqbench", "train", "--dataset", "synthetic", "--model", "sasrec", "--loss", "cce[dense]", "--batch-size", "4096",
               "--max-len", "200", "--data-dir", str(data_dir), "--results", str(tmp_path / "results")]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"}, timeout=300)
    assert done.returncode == 2, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert "ce_impl=dense at 100,000 items needs about" in message and "GiB" in message
    assert "--set ce_impl=chunked" in message
    predicted = profile_step("sasrec", "cce[dense]", ITEMS, 4096, 200, 64, mode="predict").peak_bytes
    assert predicted is not None and f"{predicted / 2**30:,.1f} GiB" in message
    assert not (tmp_path / "results").exists()
