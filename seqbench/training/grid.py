"""The comparison grid: datasets x models x losses x seeds (x hyper-parameter sweeps).

The runner expands the grid into run configs, skips those already completed in the store (same
run id), and hands the rest to an executor. An executor only has to call :func:`execute_run` for
each pending config, wherever it likes (here, one after another; with Ray, as remote tasks), and
report each :class:`RunOutcome`; one failing combination never stops the others.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from seqbench.errors import InputError, SeqbenchError
from seqbench.storage.store import RunStore
from seqbench.training.config import FIELD_TYPES, RunConfig, parse_value

Update = Callable[[str, dict[str, Any]], None]


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


# Fields a label leaves out: grid axes shown elsewhere in it, and what only chooses how a run is
# computed (the synthetic grid's shorter epochs would otherwise label every run).
UNLABELLED = frozenset({"dataset", "model", "loss", "seed", "loss_params", "model_params", "device", "threads",
                        "eval_batch_size", "epochs"})
_DEFAULTS = RunConfig()


def run_label(config: RunConfig) -> str:
    """``dataset/model/loss[params]/seedN``, plus ``{field=value}`` for protocol fields off their defaults."""
    sweep = ",".join(f"{k}={v}" for k, v in sorted(config.loss_params.items()))
    setting = [f"{k}={v}" for k, v in sorted(config.model_params.items())]
    setting += [f"{name}={getattr(config, name)}" for name in FIELD_TYPES
                if name not in UNLABELLED and getattr(config, name) != getattr(_DEFAULTS, name)]
    suffix = f" {{{','.join(setting)}}}" if setting else ""
    return f"{config.dataset}/{config.model}/{config.loss}{f'[{sweep}]' if sweep else ''}/seed{config.seed}{suffix}"


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
            configs.setdefault(config.run_id("grid"), config)
    return list(configs.values())


def execute_run(config: RunConfig, data_dir: Path, results: Path, mirror: Path | None, update: Update | None = None) -> RunOutcome:
    """Train one grid cell and store it; failures become a ``failed`` outcome, never an exception."""
    from seqbench.training.trainer import resolve_device, train_run

    label = run_label(config)
    run_id = config.run_id(resolve_device(config.device).type)
    started = time.perf_counter()

    def forward(event: str, info: dict[str, Any]) -> None:
        if update is not None:
            update(event, info | {"run_id": run_id, "label": label})

    forward("run-start", {})
    try:
        stored = train_run(config, data_dir, results, mirror, forward)
    except SeqbenchError as error:
        outcome = RunOutcome(run_id, label, "failed", error.message, time.perf_counter() - started)
    except Exception as error:  # one broken combination must not stop the grid
        outcome = RunOutcome(run_id, label, "failed", f"{type(error).__name__}: {error}", time.perf_counter() - started)
    else:
        metrics = {k.removeprefix("test_"): v for k, v in stored.row.items() if k.startswith("test_")}
        outcome = RunOutcome(run_id, label, "completed", "", time.perf_counter() - started, metrics)
    forward("run-end", {"status": outcome.status, "reason": outcome.reason, "metrics": outcome.metrics})
    return outcome


class Executor(Protocol):
    def run(self, configs: list[RunConfig], data_dir: Path, results: Path, mirror: Path | None, update: Update | None) -> list[RunOutcome]: ...

    def device_type(self, config: RunConfig) -> str:
        """Where the executor will train ``config`` ("cpu"/"cuda"): part of the run id."""
        ...


class LocalExecutor:
    """Runs the pending cells one after another in this process."""

    def device_type(self, config: RunConfig) -> str:
        from seqbench.training.trainer import resolve_device

        return resolve_device(config.device).type

    def run(self, configs: list[RunConfig], data_dir: Path, results: Path, mirror: Path | None, update: Update | None) -> list[RunOutcome]:
        return [execute_run(config, data_dir, results, mirror, update) for config in configs]


def pending(configs: Iterable[RunConfig], store: RunStore, retry_failed: bool, executor: Executor) -> tuple[list[RunConfig], list[RunOutcome]]:
    """Split the grid into runs to train and runs already stored (completed, or failed without retry).

    The run id depends on the device the *executor* trains on (a Ray cluster may have GPUs the
    driver lacks), so the executor says which.
    """
    todo: list[RunConfig] = []
    done: list[RunOutcome] = []
    for config in configs:
        run_id = config.run_id(executor.device_type(config))
        status = store.row(run_id).get("status") if store.has(run_id) else None
        if status == "completed" or (status == "failed" and not retry_failed):
            done.append(RunOutcome(run_id, run_label(config), "skipped", f"already stored ({status})"))
        else:
            todo.append(config)
    return todo, done


def run_grid(
    configs: list[RunConfig],
    data_dir: Path,
    results: Path,
    executor: Executor,
    mirror: Path | None = None,
    retry_failed: bool = False,
    update: Update | None = None,
) -> list[RunOutcome]:
    todo, done = pending(configs, RunStore(results), retry_failed, executor)
    if update is not None:
        for outcome in done:
            update("skipped", {"run_id": outcome.run_id, "label": outcome.label, "reason": outcome.reason})
    return done + executor.run(todo, data_dir, results, mirror, update)
