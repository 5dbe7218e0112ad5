"""The store never loses a completed run: a re-run that is stopped does not replace it, a re-run
without --force shows it instead of training, and two processes never train one run id at once.
Real entry point, stdout and stderr as pipes, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqbench.storage.layout import ResultsLayout
from seqbench.storage.store import RunStore

REPO = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 240  # an interpreter importing torch on a loaded 2-core machine


def train_args(toy_data: Path, results: Path, epochs: int) -> list[str]:
    return ["train", "--dataset", "toy", "--model", "gru4rec", "--loss", "cce", "--epochs", str(epochs), "--patience", "1000",
            "--set", "max_len=10", "--set", "batch_size=16", "--set", "threads=1", "--device", "cpu",
            "--data-dir", str(toy_data), "--results", str(results)]


def start(args: list[str]) -> subprocess.Popen[str]:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "seqbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "seqbench", *args], capture_output=True, text=True, env=env, timeout=600)


def wait_for_epoch(results: Path, process: subprocess.Popen[str], epoch: int = 1) -> str:
    """The run id of the run ``process`` trains, once its live log shows ``epoch``."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        for log in ResultsLayout(results).running.glob("*.log") if ResultsLayout(results).running.is_dir() else []:
            if any(line.startswith(f"epoch {epoch} ") for line in log.read_text().splitlines()):
                return log.stem
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never reached its first epoch"
        time.sleep(0.05)


def test_a_rerun_shows_the_stored_run_and_a_stopped_forced_rerun_keeps_it(toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    first = run([*train_args(toy_data, results, 3), "--json"])
    assert first.returncode == 0, first.stderr
    stored = json.loads(first.stdout)
    run_id = stored["run_id"]
    assert stored["training"]["epochs_run"] == 3

    again = run([*train_args(toy_data, results, 3), "--json"])
    assert again.returncode == 0 and "already stored as completed" in again.stderr
    assert json.loads(again.stdout)["created_at"] == stored["created_at"]  # shown, not trained again

    rerun = start([*train_args(toy_data, results, 3), "--force", "--quiet"])
    wait_for_epoch(results, rerun, epoch=1)
    rerun.send_signal(signal.SIGTERM)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 143, err
    row = RunStore(results).row(run_id)
    assert row["status"] == "completed" and row["epochs_run"] == 3 and str(row["created_at"]) == stored["created_at"]
    assert not ResultsLayout(results).live_log(run_id).exists()


def test_two_processes_never_train_one_run_and_the_second_waits_for_the_first(toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    # Long enough for a second interpreter to start while the first trains: 20 s of epochs.
    args = [*train_args(toy_data, results, 100_000), "--time-budget", "20"]
    first = start([*args, "--quiet", "--json"])
    run_id = wait_for_epoch(results, first)
    second = start([*args, "--json"])  # not quiet: it says that it waits
    out_first, err_first = first.communicate(timeout=600)
    out_second, err_second = second.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, (err_first, err_second)
    assert f"run {run_id} is being trained by another process: waiting for it" in err_second
    assert "already stored as completed" in err_second
    assert json.loads(out_second)["created_at"] == json.loads(out_first)["created_at"]  # the first process's run
    assert RunStore(results).row(run_id)["status"] == "completed"


def test_a_copied_or_symlinked_run_folder_is_not_a_second_run_and_gc_removes_only_it(toy_data: Path, tmp_path: Path) -> None:
    import shutil

    results = tmp_path / "results"
    first = run([*train_args(toy_data, results, 1), "--json", "--quiet"])
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    runs = ResultsLayout(results).runs
    shutil.copytree(runs / run_id, runs / f"{run_id}.bak")  # a user's backup copy
    outside = tmp_path / "outside"
    shutil.copytree(runs / run_id, outside)
    (runs / "planted").symlink_to(outside, target_is_directory=True)

    listed = run(["runs", "--results", str(results), "--json"])
    assert listed.returncode == 0
    assert [record["run_id"] for record in json.loads(listed.stdout)["runs"]] == [run_id]  # counted once
    assert "not named after its run id" in listed.stderr and "a symlink inside the store is never followed" in listed.stderr
    assert listed.stderr.count("warning:") == 2

    cleaned = run(["runs", "gc", "--results", str(results)])
    assert cleaned.returncode == 0, cleaned.stderr
    assert sorted(path.name for path in runs.iterdir()) == [run_id]  # the copy and the link are gone, the run stays
    assert (outside / "run.parquet").is_file()  # what the link pointed to is untouched
    assert RunStore(results).row(run_id)["status"] == "completed"


def test_a_run_file_with_a_wrong_column_type_is_skipped_with_a_warning_not_fatal(toy_data: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    results = tmp_path / "results"
    ids = []
    for seed in ("0", "1", "2"):
        done = run([*train_args(toy_data, results, 1), "--seed", seed, "--json", "--quiet"])
        assert done.returncode == 0, done.stderr
        ids.append(json.loads(done.stdout)["run_id"])
    broken = ResultsLayout(results).runs / ids[2] / "run.parquet"
    row = pq.read_table(broken).to_pylist()[0] | {"status": 1}  # status as an int
    pq.write_table(pa.Table.from_pylist([row]), broken)
    other = ResultsLayout(results).runs / ids[0] / "run.parquet"
    row = pq.read_table(other).to_pylist()[0] | {"best_epoch": "one"}  # another type than the other runs' column
    pq.write_table(pa.Table.from_pylist([row]), other)
    listed = run(["runs", "--results", str(results), "--json"])
    assert listed.returncode == 0, listed.stderr
    assert sorted(record["run_id"] for record in json.loads(listed.stdout)["runs"]) == sorted(ids[:2])
    assert "column status is int64, not text" in listed.stderr and listed.stderr.count("warning:") == 1


def test_a_full_disk_at_the_end_keeps_the_resume_point_and_the_same_command_then_stores_the_run(
    toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import seqbench
    from seqbench.errors import RuntimeFailure

    results = tmp_path / "r"
    fields = {"dataset": "toy", "model": "gru4rec", "loss": "bce", "epochs": 2, "max_len": 10, "threads": 1,
              "data_dir": toy_data, "results": results}

    def full_disk(self: RunStore, run: object, replace_completed: bool = False) -> bool:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(RunStore, "write", full_disk)
        with pytest.raises(RuntimeFailure) as failure:
            seqbench.train(**fields)
    message = failure.value.message
    assert "No space left on device" in message and str(results) in message and "MiB free there" in message
    assert "resume point" in message and "is kept" in message
    points = list(ResultsLayout(results).resume_point("x").parent.glob("*.pt"))
    assert len(points) == 1  # the trained run survives as its resume point
    record = seqbench.train(**fields)  # space freed: the same call resumes after epoch 2 and stores
    assert record["status"] == "completed" and record["training"]["epochs_run"] == 2
    assert "resumed after epoch 2" in record["notes"]
    assert not points[0].exists()


def test_a_read_only_results_folder_is_refused_before_training(toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import seqbench
    from seqbench.errors import InputError

    results = tmp_path / "r"
    results.mkdir()
    real_access = os.access
    # This suite runs as root, whom permission bits do not stop; a read-only mount would.
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == results else real_access(path, mode))
    with pytest.raises(InputError, match="is not writable"):
        seqbench.train(dataset="toy", model="gru4rec", loss="bce", epochs=1, data_dir=toy_data, results=results)
    assert list(results.iterdir()) == []
