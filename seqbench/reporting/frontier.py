"""Memory versus NDCG@10: every completed run as a point, the Pareto frontier marked.

A run is on the frontier when no other run of the same data set needs no more peak training
memory and reaches at least its test NDCG@10, being strictly better in one of the two (the
"performance under memory constraints" view of the scalable cross-entropy paper). NDCG of
different data sets is not comparable, so each data set has its own frontier.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from seqbench.reporting.runs import (
    FRONTIER_METRIC,
    completed_runs,
    loss_labels,
    metric_column,
    setting_labels,
)

NDCG_COLUMN = metric_column("test", FRONTIER_METRIC)
COLUMNS = ["dataset", "model", "loss", "seed", "run_id", "peak_memory_bytes", NDCG_COLUMN, "train_seconds", "on_frontier"]


def pareto_mask(memory: np.ndarray, score: np.ndarray) -> np.ndarray:
    """True for points that no other point dominates (less or equal memory, higher or equal score,
    strictly better in one). Sweeps memory levels in increasing order: O(n log n)."""
    memory, score = np.asarray(memory, float), np.asarray(score, float)
    mask = np.zeros(len(memory), dtype=bool)
    best_below = -np.inf  # best score among strictly smaller memory
    for level in np.unique(memory):
        at_level = memory == level
        top = score[at_level].max()
        if top > best_below:
            # Only the best score at this memory level survives; equal points do not dominate each other.
            mask |= at_level & (score == top)
            best_below = top
    return mask


def frontier_table(runs: pd.DataFrame, group_by: Sequence[str] = ("dataset",)) -> pd.DataFrame:
    """One row per completed run with peak memory and test NDCG@10; ``on_frontier`` marks the
    Pareto-optimal runs within each ``group_by`` group. ``loss`` is the variant label, with
    ``[chunked]`` for a chunked exact CE. Runs lacking either number are left out (not points).
    Sorted by group, then memory. Raises InputError when there is no completed run.
    """
    done = completed_runs(runs)
    done = done.assign(loss=loss_labels(done, with_impl=True).to_numpy())
    if "setting" not in done.columns:  # a sweep (patience=10,40): two runs of one seed are told apart
        done["setting"] = setting_labels(done).to_numpy() if not done.empty else []
    with_setting = bool((done["setting"].astype(str) != "").any()) if not done.empty else False
    for column in ("peak_memory_bytes", NDCG_COLUMN, "train_seconds"):
        if column not in done.columns:
            done[column] = np.nan
    points = done.dropna(subset=["peak_memory_bytes", NDCG_COLUMN]).reset_index(drop=True)
    points["on_frontier"] = False
    for _, group in points.groupby(list(group_by), sort=False):
        points.loc[group.index, "on_frontier"] = pareto_mask(group["peak_memory_bytes"].to_numpy(), group[NDCG_COLUMN].to_numpy())
    points["on_frontier"] = points["on_frontier"].astype(bool)
    table = points.sort_values([*group_by, "peak_memory_bytes", NDCG_COLUMN], ascending=[True] * len(group_by) + [True, False])
    columns = [*COLUMNS[:3], "setting", *COLUMNS[3:]] if with_setting else COLUMNS
    table = table[columns].reset_index(drop=True)
    table.attrs.update({
        "title": f"Peak training memory versus test {FRONTIER_METRIC} (Pareto frontier per data set)",
        "formats": {"peak_memory_bytes": "bytes", NDCG_COLUMN: "number", "train_seconds": "seconds", "on_frontier": "text", "seed": "text"},
        "bold_where": {NDCG_COLUMN: "on_frontier"},
        "hidden": ["run_id"],
        "headers": {"peak_memory_bytes": "peak memory", NDCG_COLUMN: f"test {FRONTIER_METRIC}", "train_seconds": "train time",
                    "on_frontier": "frontier"},
        "stub": ["dataset", "model", "loss", *(["setting"] if with_setting else []), "seed"],
        "notes": ["on_frontier: no run of the data set needs less memory and reaches a higher NDCG@10."],
    })
    return table
