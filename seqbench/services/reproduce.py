"""The ``reproduce`` service: train a paper's grid under its preset (what is missing), then gate
every published cell of it (:mod:`seqbench.reporting.reproduction`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from seqbench.reporting.reproduction import GateResult, check_tolerance, gate, source_of
from seqbench.reporting.study import select_runs
from seqbench.services.compare import CompareRequest, Grid, check_request
from seqbench.storage.records import document, frame_rows
from seqbench.storage.store import RunStore


def reproduction_request(request: CompareRequest, paper: str, tolerance: float) -> CompareRequest:
    """``request`` under the paper's preset, with its published table as the reference; checked."""
    source = source_of(paper)
    check_tolerance(tolerance)
    request = dataclasses.replace(request, preset=paper, table="reference", source=source)
    check_request(request)
    return request


def reproduction(request: CompareRequest, grid: Grid, paper: str, tolerance: float, paper_csv: Path | None = None) -> GateResult:
    """The gate over the grid's own completed runs (a cell without one fails as not reproduced)."""
    store = RunStore(request.results)
    runs, _ = select_runs(store.table(), grid.configs, grid.names, "grid")
    completed = runs[runs["status"] == "completed"] if not runs.empty else runs
    return gate(completed, paper, grid.names, tolerance, store=store, paper_csv=paper_csv)


def reproduction_document(result: GateResult) -> dict[str, object]:
    """The ``reproduce --json`` document."""
    return document("reproduction", paper=result.paper, source=result.source, tolerance=result.tolerance, passed=result.passed,
                    cells=frame_rows(result.cells), failed=len(result.failed), differences=result.differences)
