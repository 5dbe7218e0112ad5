"""What a grid would do, without doing it: ``seqbench compare --dry-run``.

For every run of the grid: its run id, what the store holds for it, whether ``compare`` would
train it, and an estimate of its training time from the runs already stored (seconds per epoch of
the most similar completed runs times the epochs the config allows; early stopping may end a run
sooner, and evaluation time comes on top).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from seqbench.storage.store import RunStore
from seqbench.config import RunConfig
from seqbench.training.grid import is_settled
from seqbench.training.planned import PlannedRun

# From the most to the least similar: a stored run of the same data set, model and loss is the
# best guess; any run on the same data set is better than none.
SIMILARITY = (("dataset", "model", "loss"), ("dataset", "model"), ("dataset",))


def seconds_per_epoch(stored: pd.DataFrame) -> pd.DataFrame:
    """Completed stored runs with their training seconds per epoch."""
    if stored.empty or "status" not in stored.columns:
        return pd.DataFrame(columns=["dataset", "model", "loss", "per_epoch"])
    done = stored[(stored["status"] == "completed") & (stored["epochs_run"] > 0)]
    return done.assign(per_epoch=done["train_seconds"] / done["epochs_run"])


def estimate(config: RunConfig, rates: pd.DataFrame) -> tuple[float | None, str]:
    """(seconds, basis) for one config; None when no stored run is similar enough."""
    for keys in SIMILARITY:
        if rates.empty:
            break
        mask = pd.Series(True, index=rates.index)
        for key in keys:
            mask &= rates[key] == getattr(config, key)
        similar = rates[mask]
        if not similar.empty:
            return float(similar["per_epoch"].mean()) * config.epochs, "same " + "/".join(keys)
    return None, "no similar stored run"


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


__all__ = ["plan_grid", "estimate", "seconds_per_epoch"]
