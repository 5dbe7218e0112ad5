"""The improvement grid: Table 2 of the cumulative cross-entropy paper, from stored runs.

Rows are dataset x metric, column groups are models, one column per loss plus "Improve." =
(proposed - best baseline) / best baseline (protocol.md, Comparisons). Cells are means over seeds
(``mean ± std`` with several seeds); the best value of each model group is bold. Significance of
proposed versus the best baseline: Welch's t-test across seeds when both have at least two seeds,
otherwise a paired t-test over users on per-user values computed from the stored test ranks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import stats

from seqbench.errors import InputError
from seqbench.reporting.render import MISSING, Cell, DisplayTable, fmt_number, fmt_percent
from seqbench.reporting.runs import (
    METRICS,
    MODEL_DISPLAY,
    completed_runs,
    dataset_display,
    metric_column,
    model_display,
    one_run_per_seed,
)
from seqbench.training import metrics as metric_registry

IMPROVE = "Improve."
SIGNIFICANCE_LEVEL = 1e-3  # protocol.md: mark p < 0.001
MARKER = "*"


class RanksSource(Protocol):
    """What the grid needs from a store: per-user ranks of a run (``RunStore`` satisfies it)."""

    def ranks(self, run_id: str, split: str | None = None) -> pd.DataFrame: ...


@dataclass
class Significance:
    test: str  # "welch" (across seeds), "paired" (over users) or "none" (not computable)
    statistic: float = float("nan")
    p_value: float = float("nan")
    n: int = 0  # seeds per side (welch, the smaller side) or paired users


@dataclass
class GridTable:
    """The improvement grid as data, plus its printable layout.

    ``cells``: one row per dataset, model, metric, loss label: mean, std (NaN with one seed),
    n_seeds, best. ``improvements``: one row per dataset, model, metric: the proposed and best
    baseline labels and means, improve, test, statistic, p_value, significant.
    """

    cells: pd.DataFrame
    improvements: pd.DataFrame
    columns: dict[str, list[str]]  # model -> loss labels in column order
    datasets: list[str]
    metrics: list[str]
    proposed: str
    baselines: list[str]
    split: str = "test"
    notes: list[str] = field(default_factory=list)

    def tidy(self) -> pd.DataFrame:
        """Long numeric rows for CSV/JSON: the loss cells, then one ``Improve.`` row per group."""
        improve = self.improvements.rename(columns={"improve": "mean"}).assign(loss=IMPROVE, std=np.nan, best=False)
        improve["n_seeds"] = self.improvements["proposed_n_seeds"]
        frame = pd.concat([self.cells.assign(test=None, p_value=np.nan, significant=False), improve], ignore_index=True)
        columns = ["dataset", "model", "metric", "loss", "mean", "std", "n_seeds", "best", "proposed",
                   "best_baseline", "proposed_mean", "baseline_mean", "test", "statistic", "p_value", "significant"]
        return frame.reindex(columns=columns)

    def records(self) -> list[dict]:
        """JSON-ready rows (NaN becomes None) for ``compare --json`` under ``tables.grid``."""
        frame = self.tidy().astype(object)
        return frame.where(pd.notna(frame), None).to_dict(orient="records")

    def display(self) -> DisplayTable:
        cells = self.cells.set_index(["dataset", "model", "metric", "loss"])
        improvements = self.improvements.set_index(["dataset", "model", "metric"])
        groups = [(model_display(m), [*labels, IMPROVE]) for m, labels in self.columns.items()]
        rows: list[tuple[list[str], list[Cell]]] = []
        for dataset in self.datasets:
            for i, metric in enumerate(self.metrics):
                row: list[Cell] = []
                for model, labels in self.columns.items():
                    row += [_value_cell(cells, (dataset, model, metric, label)) for label in labels]
                    row.append(_improve_cell(improvements, (dataset, model, metric)))
                rows.append(([dataset_display(dataset) if i == 0 else "", metric], row))
        title = f"Improvement of {self.proposed} over the best of {', '.join(self.baselines) or 'no baseline'} ({self.split}, mean over seeds)"
        notes = [f"Bold: best per model. Improve. {MARKER}: p < {SIGNIFICANCE_LEVEL:g} "
                 "(Welch's t-test across seeds; with one seed, paired t-test over users).", *self.notes]
        return DisplayTable(title, ["Dataset", "Metric"], groups, rows, notes)


def _value_cell(cells: pd.DataFrame, key: tuple) -> Cell:
    if key not in cells.index:
        return Cell(MISSING)
    cell = cells.loc[key]
    text = fmt_number(cell["mean"])
    if cell["n_seeds"] > 1 and pd.notna(cell["std"]):
        text += f" ± {fmt_number(cell['std'])}"
    return Cell(text, bool(cell["best"]))


def _improve_cell(improvements: pd.DataFrame, key: tuple) -> Cell:
    if key not in improvements.index:
        return Cell(MISSING)
    row = improvements.loc[key]
    text = fmt_percent(row["improve"])
    return Cell(text + (MARKER if row["significant"] else ""))


# --- choosing the columns ------------------------------------------------------------------------
def _base(label: str) -> str:
    return label.split("[", 1)[0]


def _resolve(name: str, labels: Sequence[str]) -> list[str]:
    """Labels that a user-given loss name means: the exact label, else every variant of that loss."""
    return [name] if name in labels else [label for label in labels if _base(label) == name]


def choose_losses(labels: Sequence[str], proposed: str, baselines: Sequence[str] | None) -> tuple[str | None, list[str], list[str]]:
    """(proposed label or None, baseline labels, notes)."""
    notes: list[str] = []
    matches = _resolve(proposed, labels)
    if len(matches) > 1:
        raise InputError(f"proposed loss '{proposed}' matches several variants ({', '.join(matches)}): name one of them")
    chosen = matches[0] if matches else None
    if chosen is None:
        notes.append(f"No completed run of the proposed loss '{proposed}': Improve. is empty.")
    if baselines is None:
        base = [label for label in labels if label != chosen]
    else:
        base = []
        for name in baselines:
            found = _resolve(name, labels)
            if not found:
                notes.append(f"No completed run of baseline '{name}'.")
            base += [label for label in found if label != chosen and label not in base]
    return chosen, sorted(base), notes


# --- the numbers ---------------------------------------------------------------------------------
def per_user_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-user value of a metric from 0-based ranks (its mean is the stored metric).

    Any name of the metric registry works; any other is an InputError (never a silent NDCG).
    """
    return metric_registry.per_user_values(ranks, metric)


def welch(proposed: np.ndarray, baseline: np.ndarray) -> Significance:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance on both sides: p is NaN
        result = stats.ttest_ind(proposed, baseline, equal_var=False)
    return Significance("welch", float(result.statistic), float(result.pvalue), int(min(len(proposed), len(baseline))))


def paired(proposed: np.ndarray, baseline: np.ndarray) -> Significance:
    if len(proposed) < 2:
        return Significance("none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical per-user values: p is NaN
        result = stats.ttest_rel(proposed, baseline)
    return Significance("paired", float(result.statistic), float(result.pvalue), len(proposed))


@dataclass
class _Ranks:
    """Loads each run's ranks once: a grid asks for the same run for every metric."""

    store: RanksSource | None
    split: str
    cache: dict[str, pd.DataFrame] = field(default_factory=dict)

    def get(self, run_id: str) -> pd.DataFrame:
        if run_id not in self.cache:
            frame = pd.DataFrame(columns=["user", "rank"])
            if self.store is not None:
                try:
                    stored = self.store.ranks(run_id, self.split)
                except OSError:
                    stored = frame  # no ranks file: the paired test is simply not available
                if {"user", "rank"} <= set(stored.columns):
                    frame = stored[["user", "rank"]]
            self.cache[run_id] = frame
        return self.cache[run_id]


def paired_over_users(prop_runs: pd.DataFrame, base_runs: pd.DataFrame, metric: str, ranks: _Ranks) -> Significance:
    """Pair users of runs with the same seed (else the first run of each) and t-test per-user values."""
    common = sorted(set(prop_runs["seed"]) & set(base_runs["seed"]))
    pairs = [(prop_runs[prop_runs["seed"] == s].iloc[0], base_runs[base_runs["seed"] == s].iloc[0]) for s in common]
    if not pairs:
        pairs = [(prop_runs.sort_values("seed").iloc[0], base_runs.sort_values("seed").iloc[0])]
    left, right = [], []
    for prop, base in pairs:
        joined = ranks.get(prop["run_id"]).merge(ranks.get(base["run_id"]), on="user", suffixes=("_p", "_b"))
        left.append(per_user_values(joined["rank_p"].to_numpy(), metric))
        right.append(per_user_values(joined["rank_b"].to_numpy(), metric))
    return paired(np.concatenate(left), np.concatenate(right))


def significance(prop_runs: pd.DataFrame, base_runs: pd.DataFrame, metric: str, column: str, ranks: _Ranks) -> Significance:
    if len(prop_runs) >= 2 and len(base_runs) >= 2:
        return welch(prop_runs[column].to_numpy(float), base_runs[column].to_numpy(float))
    return paired_over_users(prop_runs, base_runs, metric, ranks)


def _summaries(runs: pd.DataFrame, metrics: Sequence[str], split: str) -> pd.DataFrame:
    rows = []
    for (dataset, model, label), group in runs.groupby(["dataset", "model", "label"], sort=False):
        for metric in metrics:
            values = group[metric_column(split, metric)].dropna().to_numpy(float)
            if values.size == 0:
                continue
            std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
            rows.append({"dataset": dataset, "model": model, "metric": metric, "loss": label,
                         "mean": float(values.mean()), "std": std, "n_seeds": int(values.size)})
    frame = pd.DataFrame(rows, columns=["dataset", "model", "metric", "loss", "mean", "std", "n_seeds"])
    # Bold: every cell equal to its (dataset, model, metric) maximum, so ties are all bold.
    frame["best"] = frame["mean"] == frame.groupby(["dataset", "model", "metric"])["mean"].transform("max")
    return frame


def _improvement(cells: pd.DataFrame, runs: pd.DataFrame, proposed: str | None, baselines: list[str],
                 split: str, ranks: _Ranks) -> pd.DataFrame:
    columns = ["dataset", "model", "metric", "proposed", "best_baseline", "proposed_mean", "baseline_mean",
               "proposed_n_seeds", "improve", "test", "statistic", "p_value", "significant"]
    rows = []
    for (dataset, model, metric), group in cells.groupby(["dataset", "model", "metric"], sort=False):
        means = group.set_index("loss")["mean"]
        candidates = means.reindex([b for b in baselines if b in means.index])
        if proposed is None or proposed not in means.index or candidates.empty:
            continue
        best = str(candidates.idxmax())
        prop_mean, base_mean = float(means[proposed]), float(candidates[best])
        improve = (prop_mean - base_mean) / base_mean if base_mean > 0 else float("nan")
        scope = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
        test = significance(scope[scope["label"] == proposed], scope[scope["label"] == best], metric,
                            metric_column(split, metric), ranks)
        rows.append({"dataset": dataset, "model": model, "metric": metric, "proposed": proposed, "best_baseline": best,
                     "proposed_mean": prop_mean, "baseline_mean": base_mean,
                     "proposed_n_seeds": int(group.set_index("loss").loc[proposed, "n_seeds"]), "improve": improve,
                     "test": test.test, "statistic": test.statistic, "p_value": test.p_value,
                     "significant": bool(pd.notna(test.p_value) and test.p_value < SIGNIFICANCE_LEVEL)})
    return pd.DataFrame(rows, columns=columns)


def _order(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(values))
    return [v for v in preferred if v in unique] + sorted(v for v in unique if v not in preferred)


def improvement_grid(
    runs: pd.DataFrame,
    store: RanksSource | None,
    proposed: str = "cce",
    baselines: Sequence[str] | None = None,
    metrics: Sequence[str] = METRICS,
    split: str = "test",
) -> GridTable:
    """Build the improvement grid from a run table (``RunStore.table()``, possibly filtered).

    Only completed runs count; one run per (dataset, model, loss variant, seed). ``proposed`` and
    ``baselines`` are loss names or variant labels (``sampled-ce[num_negatives=64]``); baselines
    default to every other loss present, and only proposed + baselines are shown. ``store`` gives
    per-user ranks for the paired test (``None``: no paired test). Raises InputError when there is
    no completed run, or when ``proposed`` matches several variants.
    """
    done = one_run_per_seed(completed_runs(runs), ["dataset", "model", "label"])
    missing = [m for m in metrics if metric_column(split, m) not in done.columns]
    if missing:
        raise InputError(f"stored runs have no {split} metric {', '.join(missing)}: choose from {', '.join(METRICS)}")
    chosen, base, notes = choose_losses(sorted(done["label"].unique()), proposed, baselines)
    shown = base + ([chosen] if chosen else [])
    done = done[done["label"].isin(shown)].reset_index(drop=True)
    if done.empty:
        raise InputError(f"no completed run of '{proposed}' or the baselines: check --losses and the store")
    cells = _summaries(done, metrics, split)
    improvements = _improvement(cells, done, chosen, base, split, _Ranks(store, split))
    models = _order(done["model"], list(MODEL_DISPLAY))
    columns = {m: [label for label in shown if label in set(done.loc[done["model"] == m, "label"])] for m in models}
    return GridTable(cells, improvements, columns, sorted(done["dataset"].unique()), list(metrics),
                     proposed, base, split, notes)


def significance_frame(grid: GridTable) -> pd.DataFrame:
    """The p-values behind the markers, one row per dataset, model, metric (a printable table)."""
    frame = grid.improvements[["dataset", "model", "metric", "proposed", "best_baseline", "improve", "test", "p_value", "significant"]].copy()
    frame.attrs.update({"title": "Significance of the proposed loss against the best baseline",
                        "formats": {"improve": "percent", "p_value": "p"}, "stub": ["dataset", "model", "metric"]})
    frame["p_value"] = frame["p_value"].astype(float)
    frame.attrs["notes"] = [f"significant: p < {SIGNIFICANCE_LEVEL:g}; test: welch (across seeds) or paired (over users)."]
    return frame
