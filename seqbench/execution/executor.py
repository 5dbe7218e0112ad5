"""Where runs execute: the :class:`Executor` protocol, one run's outcome, and the in-process executor.

An executor only has to call :func:`execute_run` for each planned run, wherever it likes (here,
one after another; :mod:`seqbench.execution.processes`: one process per run; Ray: as remote
tasks), and report each :class:`RunOutcome`. The executors by name are in
:mod:`seqbench.execution.executors`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from seqbench.config import RunConfig
from seqbench.errors import SeqbenchError
from seqbench.events import EventKind, Progress
from seqbench.execution.planned import (
    PlannedRun,
    local_device_type,
    plan_run,
    plan_runs,
)
from seqbench.training.trainer import train_run


@dataclass
class RunOutcome:
    run_id: str
    label: str
    status: str  # completed | failed | interrupted | skipped
    reason: str = ""
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


def execute_run(run: PlannedRun | RunConfig, data_dir: Path, results: Path, mirror: Path | None, update: Progress | None = None) -> RunOutcome:
    """Train one grid cell in this process and store it; failures become a ``failed`` outcome, never an exception."""
    run = run if isinstance(run, PlannedRun) else plan_run(run)
    started = time.perf_counter()

    def forward(kind: EventKind, info: dict[str, Any]) -> None:
        if update is not None:
            update(kind, info | {"run_id": run.run_id, "label": run.label})

    forward(EventKind.RUN_START, {})
    try:
        stored = train_run(run.config, data_dir, results, mirror, run.progress(forward))
    except SeqbenchError as error:
        outcome = RunOutcome(run.run_id, run.label, "failed", error.message, time.perf_counter() - started)
    except Exception as error:  # one broken combination must not stop the grid
        outcome = RunOutcome(run.run_id, run.label, "failed", f"{type(error).__name__}: {error}", time.perf_counter() - started)
    else:
        status = str(stored.row.get("status", "completed"))  # "pruned" when a tuning trial's rule stopped it
        reason = "" if status == "completed" else str(stored.row.get("reason", ""))
        if stored.reused:  # another process completed it after this grid looked at the store
            status, reason = "skipped", "already stored (completed by another process meanwhile)"
        outcome = RunOutcome(run.run_id, run.label, status, reason, time.perf_counter() - started, test_metrics(stored.row))
    forward(EventKind.RUN_END, end_info(outcome))
    return outcome


def test_metrics(row: dict[str, Any]) -> dict[str, float]:
    """A stored run's test metrics by name (``NDCG@10``), as a grid outcome reports them."""
    return {k.removeprefix("test_"): v for k, v in row.items() if k.startswith("test_")}


def end_info(outcome: RunOutcome) -> dict[str, Any]:
    """The details of a run's ``run-end`` event."""
    return {"run_id": outcome.run_id, "label": outcome.label, "status": outcome.status, "reason": outcome.reason, "metrics": outcome.metrics}


class Executor(Protocol):
    """Trains planned runs (a config is planned on the executor's device first)."""

    def run(
        self, runs: Sequence[PlannedRun | RunConfig], data_dir: Path, results: Path, mirror: Path | None, update: Progress | None
    ) -> list[RunOutcome]: ...

    def device_type(self, config: RunConfig) -> str:
        """Where the executor will train ``config`` ("cpu"/"cuda"): part of the run id."""
        ...


class InProcessExecutor:
    """Runs the pending cells one after another in this process."""

    def device_type(self, config: RunConfig) -> str:
        return local_device_type(config)

    def run(
        self, runs: Sequence[PlannedRun | RunConfig], data_dir: Path, results: Path, mirror: Path | None, update: Progress | None
    ) -> list[RunOutcome]:
        return [execute_run(run, data_dir, results, mirror, update) for run in plan_runs(runs, self.device_type)]
