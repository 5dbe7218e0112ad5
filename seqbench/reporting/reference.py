"""Reproduced numbers next to the published ones (``paper_results.csv``), with relative difference.

Matching is by dataset, model, loss and metric after mapping the papers' spellings to seqbench's
registry names. The join is outer: a published row with no reproduction and a reproduction the
paper did not report both appear, with the missing side empty; nothing is ever filled in.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from seqbench.errors import InputError
from seqbench.reporting.comparisons import RankMatrix, cell_interval
from seqbench.reporting.runs import (
    DATASET_DISPLAY,
    METRICS,
    MODEL_DISPLAY,
    completed_runs,
    metric_column,
    one_run_per_seed,
    setting_labels,
)

SOURCES: tuple[str, ...] = ("li2023_cce_table2", "xu2024_table5")
DEFAULT_SOURCE = SOURCES[0]
SCOPES: tuple[str, ...] = ("datasets", "runs", "all")
# Paper spelling -> registry name; the inverse of the display maps, so one table serves both ways.
PAPER_DATASETS: dict[str, str] = {paper: name for name, paper in DATASET_DISPLAY.items()}
PAPER_MODELS: dict[str, str] = {paper: name for name, paper in MODEL_DISPLAY.items()}
KEYS = ["dataset", "model", "loss", "metric"]  # how a reproduction meets a published row


def paper_csv_path() -> Path:
    """The packaged copy of ``shared/spec/paper_results.csv`` (installed with the package)."""
    return Path(str(resources.files("seqbench.reporting").joinpath("paper_results.csv")))


def published(source: str = DEFAULT_SOURCE, path: Path | None = None) -> pd.DataFrame:
    """Published values of one source, with registry names: dataset, model, loss, metric, published."""
    frame = pd.read_csv(path or paper_csv_path())
    sources = sorted(frame["source"].unique())
    if source not in sources:
        raise InputError(f"unknown reference source '{source}': choose one of {', '.join(sources)}")
    frame = frame[frame["source"] == source]
    # Unlisted spellings fall back to lower case, the registry's convention.
    return pd.DataFrame({
        "dataset": frame["dataset"].map(lambda d: PAPER_DATASETS.get(d, str(d).lower())),
        "model": frame["model"].map(lambda m: PAPER_MODELS.get(m, str(m).lower())),
        "loss": frame["loss"].astype(str),
        "metric": frame["metric"].astype(str),
        "published": frame["value"].astype(float),
    }).reset_index(drop=True)


def reproduced(runs: pd.DataFrame, metrics: Sequence[str] = METRICS, split: str = "test", store: Any = None) -> pd.DataFrame:
    """Mean test metrics of the completed runs per dataset, setting, model, loss variant, with a 95%
    interval (t over seeds; one seed: bootstrap over users from ``store``'s ranks, else none)."""
    done = completed_runs(runs)
    done = one_run_per_seed(done.assign(setting=setting_labels(done)), ["dataset", "setting", "model", "label"])
    matrix = RankMatrix(store, split)
    rows = []
    for (dataset, setting, model, label, loss), group in done.groupby(["dataset", "setting", "model", "label", "loss"], sort=True):
        for metric in metrics:
            column = metric_column(split, metric)
            if column not in group.columns or group[column].isna().all():
                continue
            interval = cell_interval(group[group[column].notna()].sort_values("seed"), metric, split, matrix)
            rows.append({"dataset": dataset, "setting": setting, "model": model, "loss": loss, "variant": label, "metric": metric,
                         "reproduced": interval.mean, "low": interval.low, "high": interval.high,
                         "interval": interval.covers, "n_seeds": interval.n_seeds, "preset": _presets(group)})
    return pd.DataFrame(rows, columns=[*KEYS[:2], "setting", KEYS[2], "variant", "metric", "reproduced", "low", "high",
                                       "interval", "n_seeds", "preset"])


def _presets(group: pd.DataFrame) -> str:
    """The paper preset(s) the runs of a cell followed; "protocol" for seqbench's own defaults."""
    names = group["paper_preset"].fillna("").astype(str) if "paper_preset" in group.columns else pd.Series([""])
    return ",".join(sorted({name or "protocol" for name in names}))


# The preset that is each source's own code's protocol.
SOURCE_PRESETS: dict[str, str] = {"li2023_cce_table2": "li2023", "xu2024_table5": "xu2024"}


def source_for(source: str | None, preset: str | None) -> str:
    """The published table to compare with: ``source`` when given, else the table of the paper whose
    preset the runs follow (``--preset xu2024`` is checked against Xu et al.'s numbers), else the default."""
    if source:
        return source
    return next((name for name, paper in SOURCE_PRESETS.items() if paper == preset), DEFAULT_SOURCE)


# Protocol differences between a source's runs and seqbench's defaults that are known to move results.
KNOWN_DIFFERENCES: dict[str, list[str]] = {
    "li2023_cce_table2": [
        "The paper's runs used S3-Rec's code: early stopping on validation NDCG@20 (ours: NDCG@10), up to 200 epochs "
        "(ours: 150); `--preset li2023` sets those.",
        "LastFM has 5 batches per epoch: with dropout 0.5, patience 10 stops some seeds within ~11 epochs (measured); "
        "its BCE number matches such an early stop.",
    ],
    "xu2024_table5": [
        "Xu et al.'s code: SASRec with the attention residual from the raw input, padding keys visible and Xavier "
        "initialisation (SASRec preset `xu`); validation every 5 epochs for 200 (CE) or 300 epochs with no early stopping; "
        "per data set and per loss tuned dropout, batch, lr and weight decay; history not masked on Yelp "
        "(`--preset xu2024` sets all of those).",
    ],
}


def reference_table(
    runs: pd.DataFrame,
    source: str = DEFAULT_SOURCE,
    scope: str = "datasets",
    metrics: Sequence[str] = METRICS,
    paper_csv: Path | None = None,
    store: Any = None,
) -> pd.DataFrame:
    """Reproduced (mean over completed seeds, test split) versus published values.

    Columns: dataset, model, loss (the variant label when a loss has several), metric, reproduced,
    n_seeds, published, rel_diff = (reproduced - published) / published, status ("both",
    "not reproduced", "not published"). ``scope`` limits the published rows shown: ``datasets``
    (default: the data sets that have runs), ``runs`` (only dataset-model pairs that have runs) or
    ``all`` (the whole source). Raises InputError for an unknown source/scope or no completed run.
    """
    if scope not in SCOPES:
        raise InputError(f"unknown reference scope '{scope}': choose one of {', '.join(SCOPES)}")
    paper = published(source, paper_csv)
    paper = paper[paper["metric"].isin(metrics)]
    ours = reproduced(runs, metrics, store=store)
    if scope == "datasets":
        paper = paper[paper["dataset"].isin(ours["dataset"])]
    elif scope == "runs":
        pairs = set(zip(ours["dataset"], ours["model"]))
        paper = paper[[pair in pairs for pair in zip(paper["dataset"], paper["model"])]]
    if paper.empty:
        # Nothing to compare with: one line instead of rows of dashes.
        empty = pd.DataFrame(columns=["dataset", "model", "loss", "metric", "reproduced", "published", "in_ci", "status"])
        datasets = ", ".join(sorted(ours["dataset"].unique()))
        empty.attrs.update({"title": f"Reproduced versus published ({source})",
                            "notes": [f"No published numbers for {datasets} in {source}."]})
        return empty
    table = ours.merge(paper, on=KEYS, how="outer", indicator=True)
    table["status"] = table.pop("_merge").map({"both": "both", "left_only": "not published", "right_only": "not reproduced"}).astype(str)
    # A reproduction of a loss variant is labelled as such; a published-only row keeps the paper's loss.
    table["loss"] = table["variant"].where(table["variant"].notna(), table["loss"])
    published_values = table["published"].where(table["published"] != 0)
    table["rel_diff"] = (table["reproduced"] - published_values) / published_values
    table["in_ci"] = [_inside(p, lo, hi) for p, lo, hi in zip(table["published"], table["low"], table["high"])]
    own = SOURCE_PRESETS.get(source)
    table["paper_protocol"] = table["preset"].map(lambda used: "-" if pd.isna(used) else ("yes" if used == own else "no"))
    table["setting"] = table["setting"].fillna("")
    table["metric_order"] = table["metric"].map({m: i for i, m in enumerate(metrics)})
    table = table.sort_values(["dataset", "setting", "model", "loss", "metric_order"], kind="stable").reset_index(drop=True)
    columns = ["dataset", "setting", "model", "loss", "metric", "reproduced", "low", "high", "n_seeds", "published", "rel_diff",
               "in_ci", "preset", "paper_protocol", "status"]
    table = table[columns if (table["setting"] != "").any() else [c for c in columns if c != "setting"]]
    table["n_seeds"] = table["n_seeds"].astype("Int64")
    users_only = bool((ours["interval"] == "users").any())
    table.attrs.update({
        "title": f"Reproduced versus published ({source}, test split, mean and 95% CI)",
        "formats": {"reproduced": "number", "low": "number", "high": "number", "published": "number",
                    "rel_diff": "percent", "n_seeds": "text"},
        "headers": {"low": "CI low", "high": "CI high", "in_ci": "published in 95% CI?", "preset": "run preset",
                    "paper_protocol": f"paper's protocol (--preset {own})?" if own else "paper's protocol?"},
        "stub": ["dataset", "setting", "model", "loss", "metric"],
        "notes": ["rel_diff = (reproduced - published) / published; '-' = missing on that side (never filled in). "
                  "CI: t-interval over seeds" + (" (one seed: bootstrap over users, user sampling only)" if users_only else "")
                  + ". Known protocol differences:", *KNOWN_DIFFERENCES.get(source, [])],
    })
    return table


def _inside(published_value: Any, low: Any, high: Any) -> str:
    if pd.isna(published_value) or pd.isna(low) or pd.isna(high):
        return "-"
    return "yes" if low <= published_value <= high else "no"
