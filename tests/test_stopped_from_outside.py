"""Commands stopped from outside, as a job scheduler stops them: SIGTERM stores the runs in
progress as interrupted (exit 143) and stops worker processes; SIGKILL leaves no worker behind.
Real entry point, stdout and stderr as pipes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from seqbench.storage.store import RunStore

pytest.importorskip("optuna")
SETS = ["max_len=10", "batch_size=32", "model.hidden_size=16", "threads=1"]
STARTUP_SECONDS = 240  # two spawned interpreters importing torch on a loaded 2-core machine


def start_tuning(toy_data: Path, results: Path) -> tuple[subprocess.Popen, list[str]]:
    """A `compare --tune` of two losses with `--jobs 2`, returned once both studies are training."""
    args = ["compare", "--datasets", "toy", "--models", "sasrec", "--losses", "bce,cce", "--seeds", "0",
            "--epochs", "200", "--tune", "40", "--jobs", "2", "--data-dir", str(toy_data), "--results", str(results),
            *[part for s in SETS for part in ("--set", s)]]
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}
    driver = subprocess.Popen([sys.executable, "-m", "seqbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(driver.stderr), daemon=True).start()  # type: ignore[arg-type]
    deadline = time.monotonic() + STARTUP_SECONDS
    # Both studies past their first trial (imports and data loading done): the next is training.
    while len(list((results / "studies").glob("*/trials.parquet"))) < 2:
        assert driver.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "the two studies never trained side by side:\n" + "".join(lines)
        time.sleep(0.1)
    time.sleep(0.5)
    return driver, lines


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: ppid is the 4th field of /proc/N/stat)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_sigterm_stops_the_study_workers_and_stores_their_trials_as_interrupted(toy_data: Path, tmp_path: Path) -> None:
    driver, lines = start_tuning(toy_data, tmp_path / "r")
    workers = descendants(driver.pid)
    assert len(workers) >= 2
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=120) == 143, "".join(lines)
    assert wait_gone(workers, seconds=5) == []  # stopped and reaped before the driver exited
    time.sleep(0.2)  # the reader thread has the last lines
    assert "terminated (SIGTERM)" in "".join(lines)
    statuses = RunStore(tmp_path / "r").table()["status"]
    assert "interrupted" in set(statuses), "".join(lines)  # at least one study was mid-trial
    assert "failed" not in set(statuses)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_sigkill_of_the_driver_leaves_no_study_worker(toy_data: Path, tmp_path: Path) -> None:
    driver, lines = start_tuning(toy_data, tmp_path / "r")
    workers = descendants(driver.pid)
    assert len(workers) >= 2
    driver.kill()
    driver.wait()
    assert wait_gone(workers, seconds=30) == [], "".join(lines)


def test_sigterm_to_train_stores_the_run_as_terminated_and_exits_143(toy_data: Path, tmp_path: Path) -> None:
    args = ["train", "--dataset", "toy", "--model", "sasrec", "--loss", "bce", "--epochs", "5000", "--set", "patience=5000",
            "--data-dir", str(toy_data), "--results", str(tmp_path / "r")]
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}
    driver = subprocess.Popen([sys.executable, "-m", "seqbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(driver.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not any(" epoch " in line for line in lines):
        assert driver.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.1)
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=60) == 143
    reader.join(timeout=5)
    assert "error: terminated (SIGTERM)" in "".join(lines)
    row = RunStore(tmp_path / "r").table().iloc[0]
    assert (row["status"], row["reason"]) == ("interrupted", "terminated (SIGTERM)")
