"""The improvement grid: Table 2 of the cumulative cross-entropy paper, from stored runs.

Rows are dataset (x protocol setting, when the runs differ in more than the grid's axes) x metric,
column groups are models, one column per loss plus "Improve." = (proposed - best baseline) / best
baseline (protocol.md, Comparisons). Each cell is the mean over seeds with a 95% t-interval over
seeds; a one-seed cell gets a bootstrap-over-users interval, marked as covering user sampling only.
Improve. carries the interval of the difference (relative to the baseline mean) and a mark when
the adjusted p-value of the chosen test (:mod:`seqbench.reporting.stats`; default: the
hierarchical test over seeds and users) is below ``alpha``: up for better, down for worse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from seqbench.colors import base_loss
from seqbench.errors import InputError
from seqbench.reporting import stats
from seqbench.reporting.comparisons import (
    RankMatrix,
    RanksSource,
    cell_interval,
    compare_runs,
    with_adjusted,
)
from seqbench.reporting.render import (
    MISSING,
    Cell,
    DisplayTable,
    fmt_number,
    fmt_percent,
)
from seqbench.reporting.runs import (
    METRICS,
    MODEL_DISPLAY,
    completed_runs,
    dataset_display,
    loss_labels,
    metric_column,
    model_display,
    one_run_per_seed,
    setting_labels,
)
from seqbench.reporting.verdicts import verdict_frame
from seqbench.storage.records import frame_rows

IMPROVE = "Improve."
ALPHA = 0.05  # adjusted p below this marks a difference
BETTER, WORSE, USERS_ONLY = "▲", "▼", "†"
VERDICT_METRIC = "NDCG@10"
KEYS = ["dataset", "setting", "model"]


@dataclass
class GridTable:
    """The improvement grid as data, plus its printable layout.

    ``cells``: one row per dataset, setting, model, metric, loss label: mean, std, low, high (95%
    interval), interval ("seeds" or "users"), n_seeds, best. ``improvements``: one row per dataset,
    setting, model, metric: proposed and best baseline labels and means, improve with
    improve_low/improve_high, test, covers, p_value, p_adjusted, direction (+1/-1/0).
    ``verdicts``: proposed versus each baseline on ``verdict_metric`` (see :mod:`verdicts`).
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
    test: str = "hierarchical"
    adjustment: str = "holm"
    alpha: float = ALPHA
    settings: list[str] = field(default_factory=lambda: [""])
    verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)

    def tidy(self) -> pd.DataFrame:
        """Long numeric rows for CSV/JSON: the loss cells, then one ``Improve.`` row per group."""
        improve = self.improvements.rename(columns={"improve": "mean", "improve_low": "low", "improve_high": "high"})
        improve = improve.assign(loss=IMPROVE, std=np.nan, best=False, interval="difference")
        improve["n_seeds"] = self.improvements["proposed_n_seeds"]
        frame = pd.concat([self.cells.assign(test=None, p_value=np.nan, p_adjusted=np.nan, direction=0), improve], ignore_index=True)
        columns = ["dataset", "setting", "model", "metric", "loss", "mean", "std", "low", "high", "interval", "n_seeds", "best",
                   "proposed", "best_baseline", "proposed_mean", "baseline_mean", "test", "covers", "p_value", "p_adjusted", "direction"]
        return frame.reindex(columns=columns)

    def records(self) -> list[dict]:
        """JSON-ready rows (NaN becomes None) for ``compare --json`` under ``tables.grid``."""
        return frame_rows(self.tidy())

    def display(self) -> DisplayTable:
        cells = self.cells.set_index(["dataset", "setting", "model", "metric", "loss"])
        improvements = self.improvements.set_index(["dataset", "setting", "model", "metric"])
        groups = [(model_display(m), [*labels, IMPROVE]) for m, labels in self.columns.items()]
        rows: list[tuple[list[str], list[Cell]]] = []
        for dataset in self.datasets:
            for setting in self.settings:
                for i, metric in enumerate(self.metrics):
                    row: list[Cell] = []
                    for model, labels in self.columns.items():
                        row += [_value_cell(cells, (dataset, setting, model, metric, label)) for label in labels]
                        row.append(_improve_cell(improvements, (dataset, setting, model, metric)))
                    name = dataset_display(dataset) + (f" [{setting}]" if setting else "")
                    rows.append(([name if i == 0 else "", metric], row))
        return DisplayTable(self.title(), ["Dataset", "Metric"], groups, rows, [*self.legend(), *self.notes])

    def title(self) -> str:
        seeds = sorted(set(self.cells["n_seeds"].astype(int))) if not self.cells.empty else []
        count = f"{seeds[0]} seed{'s' if seeds[0] != 1 else ''} per cell" if len(seeds) == 1 else f"{min(seeds)}-{max(seeds)} seeds per cell"
        return (f"Improvement of {self.proposed} over the best of {', '.join(self.baselines) or 'no baseline'} "
                f"({self.split}, mean ± 95% CI, {count})")

    def tests_used(self) -> str:
        used = list(dict.fromkeys(self.improvements["test"])) if not self.improvements.empty else [self.test]
        return "; ".join(TEST_NAMES[t] + (" (no stored ranks)" if t != self.test else "") for t in used)

    def legend(self) -> list[str]:
        users_only = bool((self.cells["interval"] == "users").any()) if not self.cells.empty else False
        lines = [f"± : half-width of the 95% t-interval over seeds (training randomness, these test users); "
                 f"Improve. [low, high]: 95% interval of the difference, relative to the baseline mean. "
                 f"{BETTER}/{WORSE}: proposed significantly better/worse ({self.tests_used()}, p adjusted by "
                 f"{stats.ADJUSTMENT_NAMES[self.adjustment]} over the {len(self.improvements)} comparisons of this table, "
                 f"p < {self.alpha:g})."]
        if users_only or (not self.improvements.empty and (self.improvements["covers"] == "users").any()):
            lines.append(f"{USERS_ONLY}: one seed, the interval or test covers user sampling only and cannot speak "
                         "about training randomness: run more seeds (--seeds).")
        return lines


TEST_NAMES = {
    "hierarchical": "t-test over seeds and users",
    "bootstrap": "two-level bootstrap over seeds and users",
    "welch": "Welch's t-test over seed means",
    "paired": "paired t-test over users",
}


def _value_cell(cells: pd.DataFrame, key: tuple) -> Cell:
    if key not in cells.index:
        return Cell(MISSING)
    cell = cells.loc[key]
    text = fmt_number(cell["mean"])
    if pd.notna(cell["low"]):
        text += f" ±{fmt_number((cell['high'] - cell['low']) / 2)}" + (USERS_ONLY if cell["interval"] == "users" else "")
    return Cell(text, bool(cell["best"]))


def _improve_cell(improvements: pd.DataFrame, key: tuple) -> Cell:
    if key not in improvements.index:
        return Cell(MISSING)
    row = improvements.loc[key]
    text = fmt_percent(row["improve"])
    if pd.notna(row["improve_low"]):
        text += f" [{fmt_percent(row['improve_low'])}, {fmt_percent(row['improve_high'])}]"
    mark = {1: BETTER, -1: WORSE}.get(int(row["direction"]), "")
    return Cell(text + mark + (USERS_ONLY if row["covers"] == "users" else ""))


# --- choosing the columns ------------------------------------------------------------------------
def _resolve(name: str, labels: Sequence[str]) -> list[str]:
    """Labels that a user-given loss name means: the exact label, else every variant of that loss."""
    return [name] if name in labels else [label for label in labels if base_loss(label) == name]


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


def _summaries(runs: pd.DataFrame, metrics: Sequence[str], split: str, matrix: RankMatrix) -> pd.DataFrame:
    rows = []
    for (dataset, setting, model, label), group in runs.groupby([*KEYS, "label"], sort=False):
        group = group.sort_values("seed")
        for metric in metrics:
            group_m = group[group[metric_column(split, metric)].notna()]
            if group_m.empty:
                continue
            interval = cell_interval(group_m, metric, split, matrix)
            values = group_m[metric_column(split, metric)].to_numpy(float)
            rows.append({"dataset": dataset, "setting": setting, "model": model, "metric": metric, "loss": label,
                         "mean": interval.mean, "std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
                         "low": interval.low, "high": interval.high, "interval": interval.covers, "n_seeds": int(values.size)})
    frame = pd.DataFrame(rows, columns=[*KEYS, "metric", "loss", "mean", "std", "low", "high", "interval", "n_seeds"])
    # Bold: every cell equal to its (dataset, setting, model, metric) maximum, so ties are all bold.
    frame["best"] = frame["mean"] == frame.groupby([*KEYS, "metric"])["mean"].transform("max")
    return frame


def _improvement(cells: pd.DataFrame, runs: pd.DataFrame, proposed: str | None, baselines: list[str],
                 split: str, matrix: RankMatrix, test: str) -> pd.DataFrame:
    columns = [*KEYS, "metric", "proposed", "best_baseline", "proposed_mean", "baseline_mean", "proposed_n_seeds",
               "improve", "improve_low", "improve_high", "test", "covers", "p_value"]
    rows = []
    for (dataset, setting, model, metric), group in cells.groupby([*KEYS, "metric"], sort=False):
        means = group.set_index("loss")["mean"]
        candidates = means.reindex([b for b in baselines if b in means.index])
        if proposed is None or proposed not in means.index or candidates.empty:
            continue
        best = str(candidates.idxmax())
        prop_mean, base_mean = float(means[proposed]), float(candidates[best])
        scope = runs[(runs["dataset"] == dataset) & (runs["setting"] == setting) & (runs["model"] == model)]
        result = compare_runs(scope[scope["label"] == proposed], scope[scope["label"] == best], metric, split, matrix, test)
        rows.append({"dataset": dataset, "setting": setting, "model": model, "metric": metric, "proposed": proposed,
                     "best_baseline": best, "proposed_mean": prop_mean, "baseline_mean": base_mean,
                     "proposed_n_seeds": int(group.set_index("loss").loc[proposed, "n_seeds"]),
                     "improve": _relative(prop_mean - base_mean, base_mean), "improve_low": _relative(result.low, base_mean),
                     "improve_high": _relative(result.high, base_mean), "test": result.test, "covers": result.covers,
                     "p_value": result.p_value})
    return pd.DataFrame(rows, columns=columns)


def _relative(difference: float, base_mean: float) -> float:
    """A difference of means relative to the baseline's mean (NaN where that mean is not positive)."""
    return difference / base_mean if base_mean > 0 else math.nan


def _labels_per_setting(runs: pd.DataFrame) -> pd.Series:
    """Loss labels within each named setting: a loss tuned to its own num_negatives is still one
    column of its setting's rows, not a variant of the loss's default."""
    parts = [loss_labels(group, with_impl=False) for _, group in runs.groupby("setting", sort=False)]
    return pd.concat(parts).reindex(runs.index)


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
    test: str = "hierarchical",
    adjustment: str = "holm",
    alpha: float = ALPHA,
    verdict_metric: str = VERDICT_METRIC,
) -> GridTable:
    """Build the improvement grid from a run table (the grid's own runs, see ``compare``).

    Only completed runs count; one run per (dataset, setting, model, loss variant, seed), where the
    setting names the config fields that differ between runs of one data set and model (a
    ``--set patience=10,40`` sweep). ``proposed`` and ``baselines`` are loss names or variant labels
    (``sampled-ce[num_negatives=64]``); baselines default to every other loss present. ``store``
    gives per-user ranks for the tests (``None``: Welch over seed metrics only). ``test`` is one of
    :data:`stats.TESTS`, ``adjustment`` one of :data:`stats.ADJUSTMENTS`. Raises InputError when
    there is no completed run, or when ``proposed`` matches several variants.
    """
    if test not in stats.TESTS:
        raise InputError(f"unknown test '{test}': choose one of {', '.join(stats.TESTS)}")
    if adjustment not in stats.ADJUSTMENTS:
        raise InputError(f"unknown adjustment '{adjustment}': choose one of {', '.join(stats.ADJUSTMENTS)}")
    done = completed_runs(runs)
    if "setting" in done.columns:  # settings the study named (compare --tune: default, tuned)
        done = done.assign(label=_labels_per_setting(done))
    else:
        done = done.assign(setting=setting_labels(done))
    done = one_run_per_seed(done, [*KEYS, "label"])
    missing = [m for m in metrics if metric_column(split, m) not in done.columns]
    if missing:
        raise InputError(f"stored runs have no {split} metric {', '.join(missing)}: choose from {', '.join(METRICS)}")
    chosen, base, notes = choose_losses(sorted(done["label"].unique()), proposed, baselines)
    shown = base + ([chosen] if chosen else [])
    done = done[done["label"].isin(shown)].reset_index(drop=True)
    if done.empty:
        raise InputError(f"no completed run of '{proposed}' or the baselines: check --losses and the store")
    matrix = RankMatrix(store, split)
    cells = _summaries(done, metrics, split, matrix)
    improvements = with_adjusted(_improvement(cells, done, chosen, base, split, matrix, test), adjustment, alpha, "improve")
    models = _order(done["model"], list(MODEL_DISPLAY))
    columns = {m: [label for label in shown if label in set(done.loc[done["model"] == m, "label"])] for m in models}
    settings = sorted(done["setting"].unique())
    grid = GridTable(cells, improvements, columns, sorted(done["dataset"].unique()), list(metrics),
                     proposed, base, split, notes, test, adjustment, alpha, settings)
    grid.verdicts = verdict_frame(done, chosen, base, verdict_metric, split, matrix, test, adjustment, alpha)
    return grid


def significance_frame(grid: GridTable) -> pd.DataFrame:
    """The p-values behind the marks, one row per dataset, setting, model, metric (a printable table)."""
    frame = grid.improvements[[*KEYS, "metric", "proposed", "best_baseline", "improve", "improve_low", "improve_high",
                               "test", "covers", "p_value", "p_adjusted", "direction"]].copy()
    if grid.settings == [""]:
        frame = frame.drop(columns="setting")
    frame["p_value"] = frame["p_value"].astype(float)
    frame.attrs.update({
        "title": "Significance of the proposed loss against the best baseline",
        "formats": {"improve": "percent", "improve_low": "percent", "improve_high": "percent", "p_value": "p", "p_adjusted": "p"},
        "stub": ["dataset", "setting", "model", "metric"],
        "notes": [f"test: {TEST_NAMES[grid.test]}; covers: seeds+users, or users only (one seed on a side); "
                  f"p_adjusted: {stats.ADJUSTMENT_NAMES[grid.adjustment]} over {len(frame)} comparisons; "
                  f"direction: +1/-1 where p_adjusted < {grid.alpha:g}."],
    })
    return frame
