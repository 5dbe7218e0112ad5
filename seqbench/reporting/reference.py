"""Reproduced numbers next to the published ones (``paper_results.csv``), with relative difference.

Matching is by dataset, model, loss and metric after mapping the papers' spellings to seqbench's
registry names. The join is outer: a published row with no reproduction and a reproduction the
paper did not report both appear, with the missing side empty; nothing is ever filled in.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from seqbench.errors import InputError
from seqbench.reporting.runs import (
    DATASET_DISPLAY,
    METRICS,
    MODEL_DISPLAY,
    completed_runs,
    metric_column,
    one_run_per_seed,
)

SOURCES: tuple[str, ...] = ("li2023_cce_table2", "xu2024_table5")
DEFAULT_SOURCE = SOURCES[0]
SCOPES: tuple[str, ...] = ("datasets", "runs", "all")
# Paper spelling -> registry name; the inverse of the display maps, so one table serves both ways.
PAPER_DATASETS: dict[str, str] = {paper: name for name, paper in DATASET_DISPLAY.items()}
PAPER_MODELS: dict[str, str] = {paper: name for name, paper in MODEL_DISPLAY.items()}
KEYS = ["dataset", "model", "loss", "metric"]


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


def reproduced(runs: pd.DataFrame, metrics: Sequence[str] = METRICS, split: str = "test") -> pd.DataFrame:
    """Mean test metrics of the completed runs per dataset, model, loss variant: long format."""
    done = one_run_per_seed(completed_runs(runs), ["dataset", "model", "label"])
    rows = []
    for (dataset, model, label, loss), group in done.groupby(["dataset", "model", "label", "loss"], sort=True):
        for metric in metrics:
            column = metric_column(split, metric)
            values = group[column].dropna().to_numpy(float) if column in group.columns else np.array([])
            if values.size:
                rows.append({"dataset": dataset, "model": model, "loss": loss, "variant": label, "metric": metric,
                             "reproduced": float(values.mean()), "n_seeds": int(values.size)})
    return pd.DataFrame(rows, columns=[*KEYS[:3], "variant", "metric", "reproduced", "n_seeds"])


def reference_table(
    runs: pd.DataFrame,
    source: str = DEFAULT_SOURCE,
    scope: str = "datasets",
    metrics: Sequence[str] = METRICS,
    paper_csv: Path | None = None,
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
    ours = reproduced(runs, metrics)
    if scope == "datasets":
        paper = paper[paper["dataset"].isin(ours["dataset"])]
    elif scope == "runs":
        pairs = set(zip(ours["dataset"], ours["model"]))
        paper = paper[[pair in pairs for pair in zip(paper["dataset"], paper["model"])]]
    table = ours.merge(paper, on=KEYS, how="outer", indicator=True)
    table["status"] = table.pop("_merge").map({"both": "both", "left_only": "not published", "right_only": "not reproduced"}).astype(str)
    # A reproduction of a loss variant is labelled as such; a published-only row keeps the paper's loss.
    table["loss"] = table["variant"].where(table["variant"].notna(), table["loss"])
    published_values = table["published"].where(table["published"] != 0)
    table["rel_diff"] = (table["reproduced"] - published_values) / published_values
    table["metric_order"] = table["metric"].map({m: i for i, m in enumerate(metrics)})
    table = table.sort_values(["dataset", "model", "loss", "metric_order"], kind="stable").reset_index(drop=True)
    table = table[["dataset", "model", "loss", "metric", "reproduced", "n_seeds", "published", "rel_diff", "status"]]
    table["n_seeds"] = table["n_seeds"].astype("Int64")
    table.attrs.update({
        "title": f"Reproduced versus published ({source}, test split, mean over seeds)",
        "formats": {"reproduced": "number", "published": "number", "rel_diff": "percent", "n_seeds": "text"},
        "stub": ["dataset", "model", "loss", "metric"],
        "notes": ["rel_diff = (reproduced - published) / published; '-' = missing on that side (never filled in)."],
    })
    return table
