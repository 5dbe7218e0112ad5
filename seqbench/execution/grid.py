"""The comparison grid: datasets x models x losses x seeds (x hyper-parameter sweeps).

:func:`expand` turns a grid into checked run configs; :func:`run_grid` skips those already
settled in the store (same run id) and hands the rest, longest first, to an executor
(:mod:`seqbench.execution.executor`); one failing combination never stops the others.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqbench.coerce import parse_value
from seqbench.config import FIELD_TYPES, RunConfig
from seqbench.configure import make_config
from seqbench.errors import InputError
from seqbench.events import EventKind, Progress
from seqbench.execution.executor import Executor, RunOutcome
from seqbench.execution.order import longest_first
from seqbench.execution.planned import PlannedRun, plan_runs
from seqbench.storage.store import DamagedRun, RunStore


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


def expand(spec: GridSpec) -> list[RunConfig]:
    """Every run of the grid as a validated config, without duplicates, in a stable order."""
    configs: dict[str, RunConfig] = {}
    for dataset, model, loss, seed in itertools.product(spec.datasets, spec.models, spec.losses, spec.seeds):
        for overrides in _sweeps(spec.overrides):
            config = make_config(None, overrides | {"dataset": dataset, "model": model, "loss": loss, "seed": seed})
            # A sweep over another loss's parameter yields identical configs for this loss: keep one.
            configs.setdefault(json.dumps(config.hash_payload(), sort_keys=True, default=str), config)
    return list(configs.values())


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
    store = RunStore(results)
    todo, done = pending(plan_grid_runs(configs, executor), store, retry_failed)
    todo = longest_first(todo, store)
    if update is not None:
        for outcome in done:
            update(EventKind.SKIPPED, {"run_id": outcome.run_id, "label": outcome.label, "reason": outcome.reason})
    return done + executor.run(todo, data_dir, results, mirror, update)
