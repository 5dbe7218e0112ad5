"""The order a grid's runs start in, and training-time estimates from the stored runs.

Longest first, so that parallel runs end together; the estimates (seconds per epoch of the most
similar completed runs times the epochs a config allows) also feed ``compare --dry-run``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from seqbench.config import RunConfig
from seqbench.execution.planned import PlannedRun
from seqbench.losses.aliases import canonical_param
from seqbench.losses.registry import default_params, loss_class
from seqbench.models.registry import model_class
from seqbench.storage.store import RunStore

# From the most to the least similar: a stored run of the same data set, model and loss is the
# best guess; any run on the same data set is better than none.
SIMILARITY = (("dataset", "model", "loss"), ("dataset", "model"), ("dataset",))


def seconds_per_epoch(stored: pd.DataFrame) -> pd.DataFrame:
    """Completed stored runs with their training seconds per epoch."""
    needed = {"status", "epochs_run", "train_seconds", "dataset", "model", "loss"}
    if stored.empty or not needed <= set(stored.columns):  # e.g. a store of hand-made rows
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


FULL_CATALOGUE = 10_000  # items a full-softmax loss is taken to score (the data set is not opened)


def work_proxy(config: RunConfig) -> tuple[float, float]:
    """A rough (loss, model) work per epoch, for ordering only: scored items per position x
    positions carrying a loss, then the model's relative cost per position."""
    loss = loss_class(config.loss)
    positions = loss.positions_for(config.model, config.positions)  # type: ignore[arg-type]  # validated: "all" or "last"
    scored = float(FULL_CATALOGUE)
    if loss.needs_negatives:
        given = {canonical_param(key): value for key, value in config.loss_params.items()}  # K counts too
        negatives = (default_params(config.loss) | given).get("num_negatives") or 1
        scored = float(negatives) + 1
    span = config.max_len if positions == "all" else 1
    return scored * span, model_class(config.model).relative_cost


def longest_first(runs: list[PlannedRun], store: RunStore) -> list[PlannedRun]:
    """The runs, expected longest first, so that parallel runs finish close together instead of
    one long run starting last while the other cores idle.

    The expectation is the stored seconds per epoch of the same data set, model and loss when
    every run has one (a grid given more seeds), else :func:`work_proxy`. Stable: equal runs keep
    the grid's order. The order changes no run: each is trained from its own config and seed.
    """
    rates = seconds_per_epoch(store.table())
    stored = [estimate(run.config, rates) for run in runs]
    if runs and all(seconds is not None and basis == "same dataset/model/loss" for seconds, basis in stored):
        keys: list[Any] = [seconds for seconds, _ in stored]
    else:
        keys = [work_proxy(run.config) for run in runs]
    return [runs[i] for i in sorted(range(len(runs)), key=lambda i: (_negate(keys[i]), i))]


def _negate(key: Any) -> Any:
    return tuple(-part for part in key) if isinstance(key, tuple) else -key
