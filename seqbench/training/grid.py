"""The comparison grid: datasets x models x losses x seeds (x hyper-parameter sweeps).

The runner expands the grid into run configs, skips those already completed in the store (same
run id), and hands the rest to an executor. An executor only has to call :func:`execute_run` for
each pending config, wherever it likes (here, one after another; with Ray, as remote tasks), and
report each :class:`RunOutcome`; one failing combination never stops the others.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from seqbench.errors import InputError, SeqbenchError
from seqbench.storage.store import DamagedRun, RunStore
from seqbench.config import FIELD_TYPES, RunConfig, parse_value
from seqbench.training.events import EventKind, Progress
from seqbench.training.planned import PlannedRun, local_device_type, plan_run, plan_runs


@dataclass
class GridSpec:
    datasets: list[str]
    models: list[str]
    losses: list[str]
    seeds: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)  # applied to every run (--set, --epochs)

    def __post_init__(self) -> None:
        for name, values in (("datasets", self.datasets), ("models", self.models), ("losses", self.losses), ("seeds", self.seeds)):
            if not values:
                raise InputError(f"the grid is empty: --{name} names nothing")


@dataclass
class RunOutcome:
    run_id: str
    label: str
    status: str  # completed | failed | interrupted | skipped
    reason: str = ""
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


def _is_sweep(key: str, value: Any) -> bool:
    """A comma list is a grid axis, except for fields whose value is itself a list (``ks=5,10``)."""
    return isinstance(value, str) and "," in value and not str(FIELD_TYPES.get(key, "")).startswith("tuple")


def _sweeps(overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Comma lists (``sampled-ce.num_negatives=64,256``, ``patience=10,40``) become one grid axis each."""
    axes: list[list[tuple[str, Any]]] = []
    fixed: dict[str, Any] = {}
    for key, value in overrides.items():
        if _is_sweep(key, value):
            axes.append([(key, parse_value(part.strip())) for part in value.split(",")])
        else:
            fixed[key] = value
    return [fixed | dict(combination) for combination in itertools.product(*axes)]


def expand(spec: GridSpec, make_config: Callable[[dict[str, Any] | None, dict[str, Any] | None], RunConfig]) -> list[RunConfig]:
    """Every run of the grid as a validated config, without duplicates, in a stable order."""
    configs: dict[str, RunConfig] = {}
    for dataset, model, loss, seed in itertools.product(spec.datasets, spec.models, spec.losses, spec.seeds):
        for overrides in _sweeps(spec.overrides):
            config = make_config(None, overrides | {"dataset": dataset, "model": model, "loss": loss, "seed": seed})
            # A sweep over another loss's parameter yields identical configs for this loss: keep one.
            configs.setdefault(json.dumps(config.hash_payload(), sort_keys=True, default=str), config)
    return list(configs.values())


def execute_run(run: PlannedRun | RunConfig, data_dir: Path, results: Path, mirror: Path | None, update: Progress | None = None) -> RunOutcome:
    """Train one grid cell in this process and store it; failures become a ``failed`` outcome, never an exception."""
    from seqbench.training.trainer import train_run

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

    def run(self, runs: Sequence[PlannedRun | RunConfig], data_dir: Path, results: Path, mirror: Path | None, update: Progress | None) -> list[RunOutcome]: ...

    def device_type(self, config: RunConfig) -> str:
        """Where the executor will train ``config`` ("cpu"/"cuda"): part of the run id."""
        ...


class LocalExecutor:
    """Runs the pending cells one after another in this process."""

    def device_type(self, config: RunConfig) -> str:
        return local_device_type(config)

    def run(self, runs: Sequence[PlannedRun | RunConfig], data_dir: Path, results: Path, mirror: Path | None, update: Progress | None) -> list[RunOutcome]:
        return [execute_run(run, data_dir, results, mirror, update) for run in plan_runs(runs, self.device_type)]


def pending(runs: Sequence[PlannedRun], store: RunStore, retry_failed: bool) -> tuple[list[PlannedRun], list[RunOutcome]]:
    """Split the grid into runs to train and runs already stored (completed, or failed without retry).

    The run id depends on the device the *executor* trains on (a Ray cluster may have GPUs the
    driver lacks), so the runs come planned by the executor (:func:`plan_grid_runs`).
    """
    todo: list[PlannedRun] = []
    done: list[RunOutcome] = []
    for run in runs:
        try:
            status = store.row(run.run_id).get("status") if store.has(run.run_id) else None
        except DamagedRun as problem:  # trained again: the new run replaces the damaged files
            store.warn(problem)
            status = None
        if is_settled(status, retry_failed):
            done.append(RunOutcome(run.run_id, run.label, "skipped", f"already stored ({status})"))
        else:
            todo.append(run)
    return todo, done


def is_settled(status: str | None, retry_failed: bool) -> bool:
    """A stored status the grid does not train again: completed, or failed unless retried."""
    return status == "completed" or (status == "failed" and not retry_failed)


def plan_grid_runs(configs: Sequence[PlannedRun | RunConfig], executor: Executor) -> list[PlannedRun]:
    """The grid's runs planned on the devices ``executor`` trains them on."""
    return plan_runs(configs, executor.device_type)


def run_grid(
    configs: Sequence[PlannedRun | RunConfig],
    data_dir: Path,
    results: Path,
    executor: Executor,
    mirror: Path | None = None,
    retry_failed: bool = False,
    update: Progress | None = None,
) -> list[RunOutcome]:
    from seqbench.training.plan import longest_first  # plan reads this module's is_settled

    store = RunStore(results)
    todo, done = pending(plan_grid_runs(configs, executor), store, retry_failed)
    todo = longest_first(todo, store)
    if update is not None:
        for outcome in done:
            update(EventKind.SKIPPED, {"run_id": outcome.run_id, "label": outcome.label, "reason": outcome.reason})
    return done + executor.run(todo, data_dir, results, mirror, update)
