"""Verdicts: for each data set, setting and model, is the proposed loss better, worse, or not
detectably different from each baseline? And does that verdict survive each protocol setting?

One comparison per (data set, setting, model, baseline) on one metric (NDCG@10 by default), with the
grid's test; the p-values of all verdicts of a table are adjusted together.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from seqbench.reporting import stats
from seqbench.reporting.comparisons import RankMatrix, compare_runs, with_adjusted
from seqbench.reporting.render import fmt_p, fmt_percent
from seqbench.reporting.runs import dataset_display, metric_column, model_display

COLUMNS = ["dataset", "setting", "model", "metric", "proposed", "baseline", "proposed_mean", "baseline_mean", "improve",
           "improve_low", "improve_high", "test", "covers", "p_value", "p_adjusted", "n_proposed", "n_baseline",
           "direction", "verdict"]


def verdict_frame(runs: pd.DataFrame, proposed: str | None, baselines: list[str], metric: str, split: str,
                  matrix: RankMatrix, test: str, adjustment: str, alpha: float) -> pd.DataFrame:
    rows = []
    if proposed is None or metric_column(split, metric) not in runs.columns:
        return pd.DataFrame(columns=COLUMNS)
    for (dataset, setting, model), scope in runs.groupby(["dataset", "setting", "model"], sort=True):
        mine = scope[scope["label"] == proposed]
        for baseline in baselines:
            theirs = scope[scope["label"] == baseline]
            if mine.empty or theirs.empty:
                continue
            result = compare_runs(mine, theirs, metric, split, matrix, test)
            column = metric_column(split, metric)
            prop_mean, base_mean = float(mine[column].mean()), float(theirs[column].mean())
            scale = base_mean if base_mean > 0 else math.nan
            rows.append({"dataset": dataset, "setting": setting, "model": model, "metric": metric, "proposed": proposed,
                         "baseline": baseline, "proposed_mean": prop_mean, "baseline_mean": base_mean,
                         "improve": (prop_mean - base_mean) / scale, "improve_low": result.low / scale,
                         "improve_high": result.high / scale, "test": result.test, "covers": result.covers,
                         "p_value": result.p_value, "n_proposed": len(mine), "n_baseline": len(theirs)})
    frame = with_adjusted(pd.DataFrame(rows, columns=COLUMNS[:-2]), adjustment, alpha, "improve")
    frame["verdict"] = [_short(row) for row in frame.itertuples()]
    return frame.reindex(columns=COLUMNS)


def _short(row: Any) -> str:  # a row of DataFrame.itertuples(): its fields are the frame's columns
    direction = int(row.direction)
    proposed, baseline = row.proposed, row.baseline
    if direction > 0:
        return f"{proposed} > {baseline}"
    if direction < 0:  # the number beside it is proposed relative to baseline: negative, so say "<"
        return f"{proposed} < {baseline}"
    return "no detectable difference"


def verdict_lines(frame: pd.DataFrame, adjustment: str) -> list[str]:
    """One line per verdict: "LastFM / SASRec: cce > bce: +5.1% [+1.0%, +9.2%], p = 0.012 (Holm), 5 vs 5 seeds"."""
    lines = []
    for row in frame.itertuples():
        where = dataset_display(row.dataset) + (f" [{row.setting}]" if row.setting else "") + f" / {model_display(row.model)}"
        interval = f"{fmt_percent(row.improve)} [{fmt_percent(row.improve_low)}, {fmt_percent(row.improve_high)}]"
        stat = f"p = {fmt_p(row.p_adjusted)} ({stats.ADJUSTMENT_NAMES[adjustment]})"
        seeds = f"{row.n_proposed} vs {row.n_baseline} seeds"
        caveat = ", user sampling only (one seed)" if row.covers == "users" else ""
        if row.direction == 0:
            text = f"{row.proposed} vs {row.baseline}: no detectable difference ({interval}, {stat}, {seeds}{caveat})"
        else:
            text = f"{row.verdict}: {interval}, {stat}, {seeds}{caveat}"
        lines.append(f"{where} {row.metric}: {text}")
    return lines


def verdict_heading(frame: pd.DataFrame, adjustment: str) -> str:
    """Says which family the verdicts' p-values are adjusted over (not the grid's, which spans metrics)."""
    metrics = ", ".join(sorted(frame["metric"].unique())) if not frame.empty else "-"
    return (f"Verdicts ({metrics}; proposed versus each baseline; p adjusted by {stats.ADJUSTMENT_NAMES[adjustment]} "
            f"over these {len(frame)} verdicts, separately from the grid's marks):")


def sensitivity_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows (data set, model, comparison), one column per setting, and whether the verdict holds in all."""
    if frame.empty or frame["setting"].nunique() < 2:
        return pd.DataFrame()
    frame = frame.assign(comparison=frame["proposed"] + " vs " + frame["baseline"],
                         cell=[f"{v} ({fmt_percent(i)})" for v, i in zip(frame["verdict"], frame["improve"])])
    table = frame.pivot_table(index=["dataset", "model", "comparison"], columns="setting", values="cell", aggfunc="first")
    verdicts = frame.pivot_table(index=["dataset", "model", "comparison"], columns="setting", values="verdict", aggfunc="first")
    table["verdict holds"] = ["yes" if row.nunique() == 1 and row.notna().all() else "no" for _, row in verdicts.iterrows()]
    table = table.reset_index()
    table.columns.name = None
    table.attrs.update({
        "title": "Does the verdict survive each protocol setting?",
        "stub": ["dataset", "model", "comparison"],
        "notes": ["Each cell: the verdict under that setting (Improve. in brackets), tested as in the grid; "
                  "'verdict holds' = the same verdict under every setting."],
    })
    return table
