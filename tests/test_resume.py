"""A run stopped mid-way continues from its last evaluation and ends exactly as an uninterrupted one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from seqbench.configure import make_config
from seqbench.storage.layout import ResultsLayout
from seqbench.storage.store import RunStore, StoredRun
from seqbench.training.trainer import Trainer, train_run

# SASRec draws dropout from torch's generator, sampled-ce negatives from the run's own: both must resume.
RUN = {"dataset": "toy", "model": "sasrec", "loss": "sampled-ce", "epochs": 6, "eval_every": 2, "patience": 0,
       "batch_size": 32, "max_len": 10, "eval_batch_size": 64}


def interrupt_at(monkeypatch: pytest.MonkeyPatch, stop_epoch: int) -> None:
    original = Trainer.train_epoch

    def train_epoch(self: Trainer, epoch: int, progress: object) -> float:
        if epoch == stop_epoch:
            raise KeyboardInterrupt
        return original(self, epoch, progress)

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)


def same_run(first: StoredRun, second: StoredRun) -> None:
    assert first.run_id == second.run_id
    assert first.epochs["train_loss"].tolist() == second.epochs["train_loss"].tolist()
    assert first.epochs["valid_NDCG@10"].tolist() == second.epochs["valid_NDCG@10"].tolist()
    assert first.row["test_NDCG@10"] == second.row["test_NDCG@10"]
    assert all((first.checkpoint[k] == second.checkpoint[k]).all() for k in first.checkpoint)


def test_an_interrupted_run_resumes_from_its_last_evaluation_and_matches_an_uninterrupted_one(
    toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(None, RUN)
    whole = train_run(config, toy_data, tmp_path / "whole")

    results = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        interrupt_at(patch, 5)  # evaluated after epochs 2 and 4: resumes after epoch 4
        with pytest.raises(KeyboardInterrupt):
            train_run(config, toy_data, results)
    point = ResultsLayout(results).resume_point(whole.run_id)
    assert point.is_file() and RunStore(results).table()["status"].tolist() == ["interrupted"]

    trained: list[int] = []
    original = Trainer.train_epoch
    monkeypatch.setattr(Trainer, "train_epoch", lambda self, epoch, progress: trained.append(epoch) or original(self, epoch, progress))
    resumed = train_run(config, toy_data, results)
    assert trained == [5, 6]
    same_run(whole, resumed)
    assert "resumed after epoch 4" in resumed.row["notes"]
    assert "note run " in resumed.log and "resuming after epoch 4" in resumed.log  # the run's log says so too
    assert not point.exists()  # a stored run leaves no resume point behind


def test_restart_ignores_the_resume_point_and_a_damaged_point_is_ignored(
    toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(None, RUN)
    results = tmp_path / "r"
    with monkeypatch.context() as patch:
        interrupt_at(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            train_run(config, toy_data, results)
    trained: list[int] = []
    original = Trainer.train_epoch
    monkeypatch.setattr(Trainer, "train_epoch", lambda self, epoch, progress: trained.append(epoch) or original(self, epoch, progress))
    train_run(config, toy_data, results, restart=True, force=True)
    assert trained[:2] == [1, 2]

    point = ResultsLayout(results).resume_point(config.run_id("cpu"))
    point.parent.mkdir(parents=True, exist_ok=True)
    point.write_bytes(b"not a checkpoint")
    trained.clear()
    train_run(config, toy_data, results, force=True)
    assert trained == [1, 2, 3, 4, 5, 6] and not point.exists()


def test_a_killed_train_process_resumes_through_the_command_line(toy_data: Path, tmp_path: Path) -> None:
    """SIGKILL leaves no stored run, only the resume point; the next `seqbench train` continues from it."""
    results = tmp_path / "r"
    command = [sys.executable, "-m", "seqbench", "train", "--dataset", "toy", "--model", "gru4rec", "--loss", "ce",
               "--epochs", "40", "--patience", "0", "--batch-size", "32", "--max-len", "10",
               "--data-dir", str(toy_data), "--results", str(results), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    points = ResultsLayout(results).resume
    try:
        for _ in range(600):
            if any(points.glob("*.pt")) or process.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert process.poll() is None, "the run ended before a resume point was seen"
    finally:
        process.kill()
        process.wait()
    assert RunStore(results).table().empty
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '"status": "completed"' in done.stdout and "resumed after epoch" in done.stdout
    assert not any(points.glob("*.pt"))
