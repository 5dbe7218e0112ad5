"""What a grid would do, without doing it: ``seqbench compare --dry-run``.

For every run of the grid: its run id, what the store holds for it, whether ``compare`` would
train it, and an estimate of its training time from the runs already stored (seconds per epoch of
the most similar completed runs times the epochs the config allows; early stopping may end a run
sooner, and evaluation time comes on top).
"""

from __future__ import annotations

from typing import Any

from seqbench.execution.grid import is_settled
from seqbench.execution.order import estimate, seconds_per_epoch
from seqbench.execution.planned import PlannedRun
from seqbench.storage.store import RunStore


def plan_grid(runs: list[PlannedRun], store: RunStore, retry_failed: bool) -> list[dict[str, Any]]:
    """One row per grid run: label, run_id, stored status, action (skip/train/retrain), estimate."""
    stored = store.table()
    rates = seconds_per_epoch(stored)
    statuses = dict(zip(stored["run_id"], stored["status"])) if not stored.empty else {}
    rows = []
    for run in runs:
        status = statuses.get(run.run_id)
        if is_settled(status, retry_failed):
            action, seconds, basis = "skip", None, ""
        else:
            action = "train" if status is None else "retrain"
            seconds, basis = estimate(run.config, rates)
        rows.append({"run": run.label, "run_id": run.run_id, "stored": status, "action": action,
                     "epochs": run.config.epochs, "estimated_seconds": seconds, "estimate_basis": basis})
    return rows
