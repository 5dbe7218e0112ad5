"""Comparing runs on per-user values: the rank matrix of several runs, one proposed-versus-baseline
comparison, and p-values adjusted over a table. The improvement grid, the verdicts and the
reference table all compare through here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from seqbench.measure import metrics as metric_registry
from seqbench.reporting import stats
from seqbench.reporting.runs import metric_column


class RanksSource(Protocol):
    """What the grid needs from a store: per-user ranks of a run (``RunStore`` satisfies it)."""

    def ranks(self, run_id: str, split: str | None = None) -> pd.DataFrame: ...


def per_user_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-user value of a metric from 0-based ranks (its mean is the stored metric).

    Any name of the metric registry works; any other is an InputError (never a silent NDCG).
    """
    return metric_registry.per_user_values(ranks, metric)


@dataclass
class RankMatrix:
    """Per-user values of several runs on their common users: loads each run's ranks once."""

    store: RanksSource | None
    split: str
    cache: dict[str, pd.DataFrame] = field(default_factory=dict)

    def ranks(self, run_id: str) -> pd.DataFrame:
        if run_id not in self.cache:
            frame = pd.DataFrame(columns=["user", "rank"])
            if self.store is not None:
                try:
                    stored = self.store.ranks(run_id, self.split)
                except (OSError, ValueError):
                    stored = frame  # no (readable) ranks file: tests fall back to the stored metrics
                if {"user", "rank"} <= set(stored.columns):
                    frame = stored[["user", "rank"]]
            self.cache[run_id] = frame
        return self.cache[run_id]

    def values(self, run_sets: Sequence[pd.DataFrame], metric: str) -> list[np.ndarray] | None:
        """One seeds x users matrix per run set, columns = the users every run has; None without ranks."""
        frames = [[self.ranks(run_id).set_index("user")["rank"] for run_id in runs["run_id"]] for runs in run_sets]
        if any(frame.empty for group in frames for frame in group):
            return None
        users = sorted(set.intersection(*(set(frame.index) for group in frames for frame in group)))
        if not users:
            return None
        return [np.stack([per_user_values(frame.loc[users].to_numpy(), metric) for frame in group]) for group in frames]


def cell_interval(group: pd.DataFrame, metric: str, split: str, matrix: RankMatrix) -> stats.Interval:
    values = group[metric_column(split, metric)].to_numpy(float)
    if values.size >= 2:
        return stats.seed_interval(values)
    per_user = matrix.values([group], metric)
    if per_user is None:
        return stats.Interval(float(values[0]), math.nan, math.nan, 1, "users")
    return stats.user_interval(per_user[0][0])


def compare_runs(prop_runs: pd.DataFrame, base_runs: pd.DataFrame, metric: str, split: str, matrix: RankMatrix,
                 test: str) -> stats.Comparison:
    """Proposed minus baseline on ``metric``; without stored ranks, Welch over the seeds' metrics."""
    values = matrix.values([prop_runs.sort_values("seed"), base_runs.sort_values("seed")], metric)
    if values is None:
        column = metric_column(split, metric)
        seed_means = [runs[column].to_numpy(float)[:, None] for runs in (prop_runs, base_runs)]
        return stats.welch_over_seeds(*seed_means)
    return stats.compare_losses(values[0], values[1], test)


def with_adjusted(frame: pd.DataFrame, adjustment: str, alpha: float, sign_of: str) -> pd.DataFrame:
    """Adjusted p-values over the rows of one table and the direction of each significant row."""
    frame = frame.copy()
    frame["p_adjusted"] = stats.adjust(frame["p_value"].to_numpy(float), adjustment) if len(frame) else []
    significant = frame["p_adjusted"].lt(alpha)
    frame["direction"] = np.where(significant, np.sign(frame[sign_of].fillna(0.0)), 0).astype(int)
    return frame
