"""The reproduction gate: for every published cell of a grid, did seqbench land on the paper's number?

A cell passes when the published value lies inside the reproduced 95% interval, or when the
reproduced mean is within ``tolerance`` of it (relative; eSASRec's replicability rule uses 5%).
A cell the grid did not reproduce (no completed run) fails. The gate lists beside the cells the
protocol differences that remain: what the paper's preset cannot set (``Preset.unknown``) and the
run presets recorded per cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from seqbench.errors import InputError, unknown_name
from seqbench.presets import preset
from seqbench.reporting.reference import published, reference_table

# A paper, the published table seqbench compares with, and the preset that is its code's protocol.
PAPERS: dict[str, str] = {"li2023": "li2023_cce_table2", "xu2024": "xu2024_table5"}
DEFAULT_TOLERANCE = 0.05
GATE_COLUMNS = ["dataset", "model", "loss", "metric", "published", "reproduced", "low", "high", "n_seeds", "rel_diff",
                "inside_ci", "inside_tolerance", "passed", "preset"]


@dataclass
class GateResult:
    paper: str
    source: str
    tolerance: float
    cells: pd.DataFrame  # GATE_COLUMNS, one row per published cell of the grid
    differences: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(len(self.cells)) and bool(self.cells["passed"].all())

    @property
    def failed(self) -> pd.DataFrame:
        return self.cells[~self.cells["passed"]]


def source_of(paper: str) -> str:
    if paper not in PAPERS:
        raise InputError(unknown_name("paper", paper, PAPERS))
    return PAPERS[paper]


def check_tolerance(tolerance: float) -> None:
    if not 0 < tolerance < 1:
        raise InputError(f"--tolerance must be a fraction between 0 and 1 (0.05 = 5%), got {tolerance}")


def check_published(paper: str, names: Mapping[str, Sequence[str]], paper_csv: Path | None = None) -> None:
    """Refuse, before anything trains, a grid for which the paper publishes no number."""
    table = published(source_of(paper), paper_csv)
    if not (table["dataset"].isin(names["datasets"]) & table["model"].isin(names["models"]) & table["loss"].isin(names["losses"])).any():
        raise InputError(f"{source_of(paper)} publishes no number for these data sets, models and losses: "
                         f"choose ones it reports (e.g. --datasets beauty --models sasrec --losses cce for xu2024)")


def gate(completed: pd.DataFrame, paper: str, names: Mapping[str, Sequence[str]], tolerance: float = DEFAULT_TOLERANCE,
         metrics: Sequence[str] | None = None, store: object = None, paper_csv: Path | None = None) -> GateResult:
    """The gate over ``completed`` runs for the published cells of the grid's data sets, models
    and losses (``names``); ``metrics``: the published metrics to check (default: all of them);
    ``paper_csv``: another published table in ``paper_results.csv``'s layout (default: the packaged one)."""
    source = source_of(paper)
    check_tolerance(tolerance)
    if completed.empty:  # nothing reproduced yet: every published cell of the grid fails as such
        table = published(source, paper_csv)
        table = table[table["metric"].isin(metrics)] if metrics else table
        table = table.assign(reproduced=float("nan"), low=float("nan"), high=float("nan"), n_seeds=pd.NA, rel_diff=float("nan"),
                             in_ci="-", preset="")
    else:
        kwargs = {"metrics": metrics} if metrics else {}
        table = reference_table(completed, source=source, scope="all", store=store, paper_csv=paper_csv, **kwargs)
    in_grid = (table["dataset"].isin(names["datasets"]) & table["model"].isin(names["models"])
               & table["loss"].isin(names["losses"]) & table["published"].notna()) if len(table) else []
    cells = table[in_grid].copy() if len(table) else pd.DataFrame(columns=GATE_COLUMNS)
    if cells.empty:
        raise InputError(f"{source} publishes no number for these data sets, models and losses: "
                         f"choose ones it reports (e.g. --datasets beauty --models sasrec --losses cce for xu2024)")
    cells["inside_ci"] = cells["in_ci"].map({"yes": True, "no": False}).astype("boolean")
    cells["inside_tolerance"] = (cells["rel_diff"].abs() <= tolerance).where(cells["rel_diff"].notna()).astype("boolean")
    cells["passed"] = (cells["inside_ci"].fillna(False) | cells["inside_tolerance"].fillna(False)).astype(bool)
    if "preset" not in cells.columns:
        cells["preset"] = ""
    cells = cells.reindex(columns=GATE_COLUMNS).reset_index(drop=True)
    differences = [f"Not set by `--preset {paper}`: {preset(paper).unknown}."] if preset(paper).unknown else []
    return GateResult(paper, source, tolerance, cells, differences)


def gate_frame(result: GateResult) -> pd.DataFrame:
    """The gate as a printable table (the renderers read its ``attrs``)."""
    frame = result.cells.copy()
    for column in ("inside_ci", "inside_tolerance"):
        frame[column] = frame[column].map(lambda value: "-" if pd.isna(value) else ("yes" if value else "no"))
    missing = frame["reproduced"].isna()
    frame["passed"] = frame["passed"].map({True: "PASS", False: "FAIL"}).where(~missing, "FAIL (no run)")
    frame["n_seeds"] = frame["n_seeds"].astype("Int64")
    frame.attrs.update({
        "title": f"Reproduction gate: {result.paper} ({result.source}), test split, mean and 95% CI over seeds",
        "formats": {"published": "number", "reproduced": "number", "low": "number", "high": "number", "rel_diff": "percent",
                    "n_seeds": "text"},
        "headers": {"low": "CI low", "high": "CI high", "inside_ci": "published in CI?",
                    "inside_tolerance": f"within ±{result.tolerance:.0%}?"},
        "stub": ["dataset", "model", "loss", "metric"],
        "notes": [f"A cell passes when the published value is inside the reproduced 95% CI or the means differ by at most "
                  f"{result.tolerance:.0%}; {len(result.failed)} of {len(frame)} cells fail"
                  + (f" ({int(missing.sum())} without a completed run: train them, i.e. run without --no-train)." if missing.any() else "."),
                  "Protocol differences that remain:", *result.differences],
    })
    return frame
