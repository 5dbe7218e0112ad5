"""A run as planned: its config, the device it trains on, its run id, its label and its threads.

Built once, by :func:`plan_run`, and handed on to whoever trains, skips or lists it (the local,
process and Ray executors, ``compare --dry-run``, the tuner): the run id is derived here and
nowhere else; the device a config's ``device`` names is resolved by :mod:`seqbench.devices`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seqbench.config import FIELD_TYPES, RunConfig
from seqbench.devices import resolve_device
from seqbench.events import Progress

if TYPE_CHECKING:
    from seqbench.training.prune_rule import PruneRule

# Fields a label leaves out: grid axes shown elsewhere in it, and what only chooses how a run is
# computed (the synthetic grid's shorter epochs would otherwise label every run).
UNLABELLED = frozenset({"dataset", "model", "loss", "seed", "loss_params", "model_params", "device", "threads",
                        "eval_batch_size", "epochs", "code"})  # code: the loss and model axes
_DEFAULTS = RunConfig()


def local_device_type(config: RunConfig) -> str:
    """Where a run of this process (the local and process executors) trains."""
    return resolve_device(config.device).type


def run_label(config: RunConfig) -> str:
    """``dataset/model/loss[params]/seedN``, plus ``{field=value}`` for protocol fields off their defaults."""
    sweep = ",".join(f"{k}={v}" for k, v in sorted(config.loss_params.items()))
    setting = [f"{k}={v}" for k, v in sorted(config.model_params.items())]
    setting += [f"{name}={getattr(config, name)}" for name in FIELD_TYPES
                if name not in UNLABELLED and getattr(config, name) != getattr(_DEFAULTS, name)]
    suffix = f" {{{','.join(setting)}}}" if setting else ""
    return f"{config.dataset}/{config.model}/{config.loss}{f'[{sweep}]' if sweep else ''}/seed{config.seed}{suffix}"


@dataclass(frozen=True)
class PlannedRun:
    config: RunConfig
    device_type: str  # "cpu" | "cuda": part of the run id
    run_id: str
    label: str
    # Intra-op threads the run trains with; 0 = the process's count. Starts as the config's
    # ``threads``; an executor that shares cores among runs gives a threads=0 run its share.
    threads: int
    # A tuning trial's pruning rule (training/pruning.py), applied wherever the run trains; it
    # stops the run early, so it is not part of the config or the run id (the trial table has it).
    pruning: PruneRule | None = None

    def progress(self, forward: Progress) -> Progress:
        """The callback the trainer gets: ``forward``, behind the pruning rule when there is one."""
        return forward if self.pruning is None else self.pruning.callback(forward)

    def with_threads(self, threads: int) -> PlannedRun:
        return dataclasses.replace(self, threads=threads)


def plan_run(config: RunConfig, device: str | None = None) -> PlannedRun:
    """The planned run of ``config`` on ``device`` ("cpu"/"cuda"; default: this process's)."""
    device = device or local_device_type(config)
    return PlannedRun(config, device, config.run_id(device), run_label(config), config.threads)


def plan_runs(items: Iterable[RunConfig | PlannedRun], device_of: Callable[[RunConfig], str] = local_device_type) -> list[PlannedRun]:
    """Plan every config (``device_of`` says where an executor trains it); planned runs pass through."""
    return [item if isinstance(item, PlannedRun) else plan_run(item, device_of(item)) for item in items]
