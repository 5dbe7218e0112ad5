"""Paper-style reports from stored runs: improvement grid, reference table, frontier, figures.

Everything here reads a run table (``RunStore(root).table()``, filtered as the caller likes) and
counts only ``completed`` runs. The CLI (``seqbench compare``) calls:

- ``improvement_grid(runs, store, proposed="cce", baselines=None) -> GridTable``
  (``.tidy()`` / ``.records()`` for CSV/JSON, ``.improvements`` for p-values);
- ``reference_table(runs, source="li2023_cce_table2", scope="datasets") -> DataFrame``;
- ``frontier_table(runs) -> DataFrame``;
- ``significance_frame(grid) -> DataFrame`` (the p-values as a printable table);
- ``write_figures(store, runs, plots_dir, per_timestamp=None) -> list[Path]``;
- ``render(table, fmt) -> str`` for fmt in text/markdown/latex/csv, ``to_rich(table)`` for a terminal;
- ``frame_records(frame) -> list[dict]`` for the JSON of the DataFrame tables.

No-run cases raise :class:`seqbench.errors.InputError` with a one-line message.
"""

from __future__ import annotations

from seqbench.reporting.figures import write_figures
from seqbench.reporting.frontier import frontier_table, pareto_mask
from seqbench.reporting.grid import GridTable, improvement_grid, significance_frame
from seqbench.reporting.reference import SOURCES, reference_table
from seqbench.reporting.render import FORMATS, render, to_rich
from seqbench.reporting.runs import METRICS
from seqbench.storage.records import frame_rows

# JSON-ready rows of a report DataFrame: the project's one records helper, under its report name.
frame_records = frame_rows


__all__ = [
    "FORMATS",
    "METRICS",
    "SOURCES",
    "GridTable",
    "frame_records",
    "frontier_table",
    "improvement_grid",
    "pareto_mask",
    "reference_table",
    "render",
    "significance_frame",
    "to_rich",
    "write_figures",
]
