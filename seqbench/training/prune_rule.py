"""The tuner's pruning decision for one trial, fixed before the trial starts, so it travels with
the run to wherever the run trains (this process, a worker process, a Ray node).

Optuna's median pruner prunes a trial at epoch ``s`` (from the warm-up epoch on, once enough
trials have completed) when the trial's best validation value so far is below the median of the
completed trials' values at epoch ``s``. The trials of one study run one after another, so when
trial ``n`` starts the completed trials, and hence every epoch's median, are already known:
:func:`seqbench.tuning.pruning.median_rule` computes them once, and :class:`PruneRule` applies them epoch by epoch with
no access to the study. ``tests/test_pruning.py`` checks the decisions against Optuna's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from seqbench.events import EventKind, Progress, StopRun


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
