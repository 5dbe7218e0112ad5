"""The tuner's pruning decision for one trial, fixed before the trial starts, so it travels with
the run to wherever the run trains (this process, a worker process, a Ray node).

Optuna's median pruner prunes a trial at epoch ``s`` (from the warm-up epoch on, once enough
trials have completed) when the trial's best validation value so far is below the median of the
completed trials' values at epoch ``s``. The trials of one study run one after another, so when
trial ``n`` starts the completed trials, and hence every epoch's median, are already known:
:func:`median_rule` computes them once, and :class:`PruneRule` applies them epoch by epoch with
no access to the study. ``tests/test_pruning.py`` checks the decisions against Optuna's own.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from seqbench.training.events import EventKind, Progress


@dataclass(frozen=True)
class PruneRule:
    """Stop a run at an evaluated epoch whose best ``valid_<metric>`` so far is below that epoch's
    median; never before ``warmup`` nor at the run's last allowed epoch (nothing left to save)."""

    metric: str
    warmup: int
    medians: dict[int, float] = field(default_factory=dict)  # epoch -> median over completed trials

    def should_stop(self, epoch: int, best_so_far: float) -> bool:
        if epoch < self.warmup:
            return False
        if math.isnan(best_so_far):  # Optuna's order: a trial with no number yet is pruned
            return True
        return epoch in self.medians and best_so_far < self.medians[epoch]

    def callback(self, forward: Progress | None = None) -> Progress:
        """A progress callback that passes every event on and raises ``StopRun`` when pruned."""
        from seqbench.training.trainer import StopRun

        column = f"valid_{self.metric}"
        state: dict[str, float] = {"epochs": 0.0, "best": float("nan")}

        def callback(kind: EventKind, info: dict[str, Any]) -> None:
            if forward is not None:
                forward(kind, info)
            if kind == EventKind.START:
                state["epochs"] = float(info["epochs"])
            if kind != EventKind.EPOCH or column not in info:
                return
            epoch, value = int(info["epoch"]), float(info[column])
            state["best"] = value if math.isnan(state["best"]) else max(state["best"], value)
            if epoch < state["epochs"] and self.should_stop(epoch, state["best"]):
                raise StopRun(f"pruned by the tuner after epoch {epoch} (validation {self.metric} below the median)")

        return callback


def median_rule(trials: pd.DataFrame, metric: str, warmup: int, after_trials: int) -> PruneRule | None:
    """The rule for the next trial of a study whose trials so far are ``trials`` (the study
    table); None while fewer than ``after_trials`` trials (at least one) have completed."""
    completed = trials[trials["state"] == "completed"] if len(trials) else trials
    if len(completed) == 0 or len(completed) < after_trials:
        return None
    by_epoch: dict[int, list[float]] = {}
    for curve in completed["intermediate_json"]:
        for epoch, value in json.loads(curve).items():
            by_epoch.setdefault(int(epoch), []).append(float(value))
    medians = {epoch: float(np.nanpercentile(values, 50)) for epoch, values in by_epoch.items() if not all(map(math.isnan, values))}
    return PruneRule(metric, warmup, medians)
