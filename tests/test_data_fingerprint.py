"""A run is never mistaken for one on other data: a data set prepared again (another recipe or
source) makes its stored runs stale, and train, eval and compare refuse them instead of reusing them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_toy_dataset

from seqbench.configure import make_config
from seqbench.data.prepare import load_dataset
from seqbench.errors import InputError
from seqbench.storage.store import RunStore
from seqbench.training.reevaluate import evaluate_stored
from seqbench.training.trainer import train_run

RUN = {"dataset": "toy", "model": "gru4rec", "loss": "bce", "epochs": 1, "batch_size": 32, "max_len": 10, "eval_batch_size": 64}


def prepare_again(data_dir: Path, seed: int) -> None:
    shutil.rmtree(data_dir / "toy")
    write_toy_dataset(data_dir, seed=seed)


def test_the_fingerprint_follows_the_data(tmp_path: Path) -> None:
    write_toy_dataset(tmp_path, seed=0)
    first = load_dataset("toy", tmp_path).fingerprint
    assert load_dataset("toy", tmp_path).fingerprint == first  # read again: the same
    prepare_again(tmp_path, seed=1)
    assert load_dataset("toy", tmp_path).fingerprint != first


def test_a_run_on_data_prepared_again_is_refused_by_train_and_eval_until_forced(tmp_path: Path) -> None:
    data, results = tmp_path / "data", tmp_path / "results"
    write_toy_dataset(data, seed=0)
    config = make_config(None, RUN)
    stored = train_run(config, data, results)
    assert stored.row["data_fingerprint"] == load_dataset("toy", data).fingerprint
    assert train_run(config, data, results).reused  # same data: reused

    prepare_again(data, seed=1)
    with pytest.raises(InputError, match="another version of data set 'toy'.*--force"):
        train_run(config, data, results)
    with pytest.raises(InputError, match="another version of data set 'toy'"):
        evaluate_stored(stored.run_id, results, data)
    again = train_run(config, data, results, force=True)
    assert not again.reused and again.row["data_fingerprint"] == load_dataset("toy", data).fingerprint
    assert RunStore(results).row(stored.run_id)["data_fingerprint"] == again.row["data_fingerprint"]


def test_compare_refuses_stale_runs_with_exit_2(tmp_path: Path) -> None:
    data, results = tmp_path / "data", tmp_path / "results"
    write_toy_dataset(data, seed=0)
    grid = [sys.executable, "-m", "seqbench", "compare", "--datasets", "toy", "--models", "gru4rec", "--losses", "bce",
            "--seeds", "0", "--epochs", "1", "--set", "batch_size=32", "--set", "max_len=10",
            "--data-dir", str(data), "--results", str(results), "--quiet"]
    assert subprocess.run(grid, capture_output=True, text=True).returncode == 0
    prepare_again(data, seed=1)
    for extra in ([], ["--no-train"]):
        done = subprocess.run([*grid, *extra], capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert "trained on another version of their data set" in done.stderr and len(done.stderr.strip().splitlines()) == 1
