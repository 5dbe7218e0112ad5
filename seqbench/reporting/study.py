"""The tables of one comparison study: which stored runs belong to it, and every table built from them.

A study is a list of run configs (a ``compare`` grid). Its tables use exactly those configs' runs,
found by run id; other stored runs of the same data set, model, loss and seed never leak in. With
``selection="stored"`` a user asks instead for every completed stored run of the grid's data sets,
models, losses and seeds; when those differ in more than the grid's axes, the differing fields
become a "setting" (rows of their own in every table) and a note says so.

A request may instead name its settings (``arms``: setting name -> configs, as ``compare --tune``
does with "default" and "tuned"): each arm's runs are found by run id and shown as that setting,
whatever their configs, so each loss's tuned config is one column of the "tuned" rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from seqbench.config import RunConfig
from seqbench.errors import InputError
from seqbench.registry import Registry
from seqbench.reporting.frontier import frontier_table
from seqbench.reporting.grid import GridTable, improvement_grid, significance_frame
from seqbench.reporting.reference import reference_table
from seqbench.reporting.runs import setting_labels
from seqbench.reporting.verdicts import (
    sensitivity_table,
    verdict_heading,
    verdict_lines,
)
from seqbench.storage.records import frame_rows
from seqbench.storage.store import RunStore

SELECTIONS: tuple[str, ...] = ("grid", "stored")
DEVICE_TYPES = ("cpu", "cuda")
# The heading of each table wherever a study is shown (the command line, the Markdown report).
HEADINGS: dict[str, str] = {
    "grid": "Improvement grid (test metrics; Improve. = (proposed - best baseline) / best baseline)",
    "frontier": "Peak training memory versus test NDCG@10 (Pareto frontier marked)",
    "significance": "Significance of the proposed loss against the best baseline (p-values)",
    "sensitivity": "Protocol sensitivity of the verdicts",
    "reference": "Reproduced versus published",
    "tuning_budget": "Tuning budget per loss (compare --tune: trials x max epochs, completed/pruned, wall time)",
    "tuning_chosen": "Chosen hyper-parameters per loss (best trial by validation NDCG@10)",
}


@dataclass
class StudyRequest:
    configs: list[RunConfig]
    names: dict[str, list[Any]]  # datasets, models, losses, seeds of the grid
    table: str = "grid"
    selection: str = "grid"
    proposed: str = "cce"
    baselines: list[str] | None = None
    source: str = "li2023_cce_table2"
    test: str = "hierarchical"
    adjustment: str = "holm"
    alpha: float = 0.05
    arms: dict[str, list[RunConfig]] = field(default_factory=dict)  # named settings; {} = the configs alone
    tuning: Any = None  # compare --tune: a seqbench.services.tune_grid.GridTuning (its tables join the study's)


@dataclass
class StudyTables:
    runs: pd.DataFrame  # every selected run (any status)
    completed: pd.DataFrame
    tables: dict[str, Any] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)
    verdict_heading: str = "Verdicts:"
    notes: list[str] = field(default_factory=list)


def grid_run_ids(configs: Sequence[RunConfig]) -> set[str]:
    """Run ids of the grid's configs on any device: a config trained on a GPU elsewhere is the same config."""
    return {config.run_id(device) for config in configs for device in DEVICE_TYPES}


def select_runs(table: pd.DataFrame, configs: Sequence[RunConfig], names: dict[str, list[Any]],
                selection: str, arms: dict[str, list[RunConfig]] | None = None,
                known: set[str] | frozenset[str] = frozenset()) -> tuple[pd.DataFrame, list[str]]:
    """The stored runs a study's tables use, and notes about what was left out or differs.

    ``arms``: named settings, each run of an arm gets a ``setting`` column with its name (a run in
    two arms appears twice). ``known``: run ids that are expected to be left out (a study's
    tuning trials), so they are not reported as "other stored runs"."""
    if selection not in SELECTIONS:
        raise InputError(f"unknown run selection '{selection}': choose one of {', '.join(SELECTIONS)}")
    if table.empty:
        return table, []
    in_cells = (table["dataset"].isin(names["datasets"]) & table["model"].isin(names["models"])
                & table["loss"].isin(names["losses"]) & table["seed"].isin(names["seeds"]))
    cells = table[in_cells]
    notes: list[str] = []
    if arms and selection != "grid":
        raise InputError("named settings (compare --tune) show exactly their own runs: drop --runs stored")
    if selection == "grid":
        parts = [cells[cells["run_id"].isin(grid_run_ids(arm))].assign(setting=name) for name, arm in (arms or {}).items()]
        chosen = (pd.concat(parts) if parts else cells[cells["run_id"].isin(grid_run_ids(configs))]).reset_index(drop=True)
        others = cells[~cells["run_id"].isin(set(chosen["run_id"]) | set(known)) & (cells["status"] == "completed")]
        if len(others):
            notes.append(f"{len(others)} other stored run(s) of these data sets, models, losses and seeds have another "
                         "config and are not in the tables (use --runs stored to include them, shown as settings).")
        return chosen, notes
    chosen = cells.reset_index(drop=True)
    done = chosen[chosen["status"] == "completed"]
    settings = sorted(set(setting_labels(done)) - {""}) if not done.empty else []
    if settings:
        notes.append(f"The stored runs differ in more than the grid's axes; each setting gets rows of its own: {'; '.join(settings)}.")
    return chosen, notes


def build_tables(request: StudyRequest, store: RunStore) -> StudyTables:
    """Every requested table over the study's completed runs; InputError when there is none."""
    if request.table not in TABLE_CHOICES:
        raise InputError(f"unknown table '{request.table}': choose one of {', '.join(TABLE_CHOICES)}")
    tuning = request.tuning
    runs, notes = select_runs(store.table(), request.configs, request.names, request.selection, request.arms,
                              tuning.trial_run_ids if tuning is not None else frozenset())
    completed = runs[runs["status"] == "completed"] if not runs.empty else runs
    if completed.empty:
        raise InputError(f"no completed runs in {store.root} for this grid: run `seqbench compare` without --no-train first")
    study = StudyTables(runs, completed.reset_index(drop=True), notes=notes)
    for name in TABLES.names() if request.table == "all" else [request.table]:
        if name != "grid":
            _tuning_tables(study, tuning)  # what each loss's search spent and chose, right after the grid it feeds
        TABLES.get(name)(study, request, store)
    _tuning_tables(study, tuning)
    return study


def _grid_tables(study: StudyTables, request: StudyRequest, store: RunStore) -> None:
    """The improvement grid, its significance table, the verdicts and their sensitivity."""
    grid = improvement_grid(study.completed, store, proposed=request.proposed, baselines=request.baselines,
                            test=request.test, adjustment=request.adjustment, alpha=request.alpha)
    study.tables["grid"] = grid
    study.tables["significance"] = significance_frame(grid)
    study.verdicts = verdict_lines(grid.verdicts, request.adjustment)
    study.verdict_heading = verdict_heading(grid.verdicts, request.adjustment)
    sensitivity = sensitivity_table(grid.verdicts)
    if not sensitivity.empty:
        study.tables["sensitivity"] = sensitivity
    study.notes += grid.notes


def _tuning_tables(study: StudyTables, tuning: Any) -> None:
    """``compare --tune``'s budget and choices, once."""
    if tuning is not None and "tuning_budget" not in study.tables:
        study.tables["tuning_budget"] = tuning.budget
        study.tables["tuning_chosen"] = tuning.chosen
        study.notes += tuning.notes


def _frontier_table(study: StudyTables, request: StudyRequest, store: RunStore) -> None:
    study.tables["frontier"] = frontier_table(study.completed)


def _reference_table(study: StudyTables, request: StudyRequest, store: RunStore) -> None:
    study.tables["reference"] = reference_table(study.completed, source=request.source, store=store)


# The tables a study can show, each one function that adds its table(s) to the study; "all" is every one.
TABLES: Registry[Callable[[StudyTables, StudyRequest, RunStore], None]] = Registry(
    "table", {"grid": _grid_tables, "frontier": _frontier_table, "reference": _reference_table}
)
TABLE_CHOICES: tuple[str, ...] = (*TABLES.names(), "all")


def verdict_records(grid: GridTable | None) -> list[dict[str, Any]]:
    if grid is None or grid.verdicts.empty:
        return []
    return frame_rows(grid.verdicts)
