"""Ranking metrics from ranks (0 = the target scored best), exactly as protocol.md defines them."""

from __future__ import annotations

import numpy as np

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)


def hit_rate(ranks: np.ndarray, k: int) -> np.ndarray:
    return (ranks < k).astype(np.float64)


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    # One relevant item: the ideal DCG is 1, so NDCG is the target's discounted gain.
    return np.where(ranks < k, 1.0 / np.log2(ranks.astype(np.float64) + 2.0), 0.0)


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    return 1.0 / (ranks.astype(np.float64) + 1.0)


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, float]:
    """Mean HR@k, NDCG@k for each k, and MRR over the evaluated users."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return {}
    result: dict[str, float] = {}
    for k in ks:
        result[f"HR@{k}"] = float(hit_rate(ranks, k).mean())
    for k in ks:
        result[f"NDCG@{k}"] = float(ndcg(ranks, k).mean())
    result["MRR"] = float(reciprocal_rank(ranks).mean())
    return result
