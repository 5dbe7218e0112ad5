"""A run in progress can be followed: its live log under results/running/ while it trains,
``seqbench runs --running`` reading it (stdout piped), and nothing left once the run is stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from seqbench.configure import make_config
from seqbench.storage.layout import ResultsLayout
from seqbench.training.record import live_runs
from seqbench.training.trainer import train_run


def piped(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "seqbench", *args], capture_output=True, text=True, env=env, timeout=120)


def test_the_validation_curve_is_readable_while_the_run_trains(toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    config = make_config(None, {"dataset": "toy", "model": "gru4rec", "loss": "cce", "epochs": 3, "max_len": 10, "device": "cpu"})
    seen: list[list[dict[str, Any]]] = []

    def watch(kind: str, info: dict[str, Any]) -> None:
        if kind == "epoch":
            seen.append(live_runs(results))

    train_run(config, toy_data, results, progress=watch)  # type: ignore[arg-type]
    assert [[epoch["epoch"] for epoch in runs[0]["epochs"]] for runs in seen] == [[1], [1, 2], [1, 2, 3]]
    assert all(runs[0]["alive"] and runs[0]["pid"] == os.getpid() for runs in seen)
    assert all(0.0 <= runs[0]["epochs"][-1]["valid_NDCG@10"] <= 1.0 for runs in seen)
    assert live_runs(results) == [] and not any(ResultsLayout(results).running.iterdir())  # stored: the live log is gone


def test_runs_running_lists_live_logs_and_says_when_their_process_is_gone(tmp_path: Path) -> None:
    running = ResultsLayout(tmp_path).running
    running.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (running / "toy-sasrec-cce-s0-abc.log").write_text(
        f"2026-12-02T09:00:00+00:00 seqbench 0.1.0 run toy-sasrec-cce-s0-abc on cpu pid {dead}\nconfig {{}}\n"
        "epoch 5 loss 8.6410 valid_NDCG@10 0.0123 test_NDCG@10 0.0101 train_seconds 10.00 peak_memory_bytes 5 best_epoch 5\n")
    listed = piped("runs", "--running", "--results", str(tmp_path), "--json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["kind"] == "running"
    (run,) = document["runs"]
    assert run["run_id"] == "toy-sasrec-cce-s0-abc" and run["alive"] is False
    assert run["epochs"] == [{"epoch": 5, "loss": 8.641, "valid_NDCG@10": 0.0123, "test_NDCG@10": 0.0101, "train_seconds": 10.0,
                              "peak_memory_bytes": 5, "best_epoch": 5}]
    text = piped("runs", "--running", "--results", str(tmp_path))
    assert "not running" in text.stdout and "epoch 5: loss 8.6410  valid_NDCG@10 0.0123" in text.stdout
    empty = piped("runs", "--running", "--results", str(tmp_path / "none"))
    assert empty.returncode == 0 and "no run in progress" in empty.stderr
