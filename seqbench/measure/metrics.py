"""Ranking metrics from ranks (0 = the target scored best), exactly as protocol.md defines them.

The metric registry: a metric name is ``NAME@k`` (``HR@10``, ``NDCG@20``, ``MRR@10``) or, for a
metric defined without a cut-off, ``NAME`` alone (``MRR``). Each name is parsed once
(:func:`parse_metric`) into one per-user function of the ranks, whose mean over users is the
metric; evaluation, the stored columns, ``train``/``runs`` output and the grid's per-user
significance test all read metrics through it, so a name is either understood everywhere or
refused with the valid ones listed.

Adding a metric = one :class:`MetricKind` entry in ``KINDS`` below (its per-user function).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from seqbench.errors import InputError

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)


def hit_rate(ranks: np.ndarray, k: int) -> np.ndarray:
    return (ranks < k).astype(np.float64)


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    # One relevant item: the ideal DCG is 1, so NDCG is the target's discounted gain.
    return np.where(ranks < k, 1.0 / np.log2(ranks.astype(np.float64) + 2.0), 0.0)


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    return 1.0 / (ranks.astype(np.float64) + 1.0)


def _mrr(ranks: np.ndarray, k: int | None) -> np.ndarray:
    # MRR@k (RecBole's, which it selects on at k = 10): the reciprocal rank when the target is in
    # the top k, else 0. Plain MRR has no cut-off.
    values = reciprocal_rank(ranks)
    return values if k is None else np.where(ranks < k, values, 0.0)


PerUser = Callable[[np.ndarray, "int | None"], np.ndarray]


def _cut_only(metric: Callable[[np.ndarray, int], np.ndarray]) -> PerUser:
    """A metric defined only with a cut-off, as a :data:`PerUser` (``parse_metric`` gives it a k)."""

    def per_user(ranks: np.ndarray, k: int | None) -> np.ndarray:
        if k is None:
            raise ValueError(f"{metric.__name__} needs a cut-off k")
        return metric(ranks, k)

    return per_user


@dataclass(frozen=True)
class MetricKind:
    """One family of metrics: its per-user function of (ranks, k; None = no cut-off)."""

    name: str
    per_user: PerUser
    uncut: bool = False  # also defined without a cut-off, as plain ``NAME``


KINDS: dict[str, MetricKind] = {
    kind.name: kind
    for kind in (
        MetricKind("HR", _cut_only(hit_rate)),  # parse_metric guarantees a k for kinds that are not uncut
        MetricKind("NDCG", _cut_only(ndcg)),
        MetricKind("MRR", _mrr, uncut=True),
    )
}


@dataclass(frozen=True)
class Metric:
    kind: MetricKind
    k: int | None

    @property
    def name(self) -> str:
        return self.kind.name if self.k is None else f"{self.kind.name}@{self.k}"

    def per_user(self, ranks: np.ndarray) -> np.ndarray:
        """One value per user (float64); the metric is their mean."""
        return self.kind.per_user(np.asarray(ranks), self.k)


def _valid_names() -> str:
    return ", ".join(f"{name}@k" + (f", {name}" if kind.uncut else "") for name, kind in KINDS.items())


@functools.cache
def parse_metric(name: str) -> Metric:
    """``NDCG@10`` -> the metric; InputError naming the valid forms for anything else."""
    match = re.fullmatch(r"([A-Za-z]+)(?:@(\d+))?", name.strip())
    kind = KINDS.get(match.group(1)) if match else None
    if match is None or kind is None:
        raise InputError(f"unknown metric '{name}': valid metrics are {_valid_names()} (k >= 1)")
    k = int(match.group(2)) if match.group(2) is not None else None
    if k is None and not kind.uncut:
        raise InputError(f"metric '{name}' needs a cut-off: write {kind.name}@k, e.g. {kind.name}@10")
    if k is not None and k < 1:
        raise InputError(f"metric '{name}' has cut-off {k}: k must be >= 1, e.g. {kind.name}@10")
    return Metric(kind, k)


def is_metric(name: str) -> bool:
    """Whether ``name`` (a column name without its split prefix, say) names a metric."""
    try:
        parse_metric(name)
    except InputError:
        return False
    return True


def metric_names(ks: tuple[int, ...] = DEFAULT_KS) -> list[str]:
    """The metrics an evaluation with cut-offs ``ks`` computes, in stored column order."""
    names: list[str] = []
    for kind in KINDS.values():
        names += [f"{kind.name}@{k}" for k in ks]
        if kind.uncut:
            names.append(kind.name)
    return names


def per_user_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-user values of ``metric`` from 0-based ranks (their mean is the stored metric)."""
    return parse_metric(metric).per_user(ranks)


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, float]:
    """Mean of every registered metric at each cut-off in ``ks`` (and uncut ones) over the users."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return {}
    return {name: float(per_user_values(ranks, name).mean()) for name in metric_names(ks)}
