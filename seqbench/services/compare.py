"""The ``compare`` service: plan the grid, train what is not stored, build the study's tables.

The command line (:mod:`seqbench.cli.compare`) turns options into a :class:`CompareRequest` and
renders what comes back; everything else happens here, in order:

1. :func:`check_request` refuses bad choices before anything runs;
2. :func:`plan` expands the grid (names checked against the registries, the epochs and seeds
   policies for synthetic versus real data sets) into validated run configs;
3. :func:`dry_run` (``--dry-run``) says what is stored and what would train, and how long;
4. :func:`make_executor`, :func:`prepare` and :func:`train` run the grid's missing runs;
5. :func:`report` builds the tables (and figures, a Markdown report) from the store, and
   :func:`compare_document` / :func:`plan_document` assemble the ``--json`` documents.

Progress and notes (a file written, a figure that could not be drawn) go to the caller's
:data:`~seqbench.events.Progress` callback; nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqbench.coerce import parse_int_list, parse_list
from seqbench.colors import base_loss
from seqbench.config import RunConfig, parse_assignments
from seqbench.configure import check_catalogues
from seqbench.data.prepare import ensure_prepared, load_dataset
from seqbench.data.registry import load_registry
from seqbench.data.sequences import is_prepared
from seqbench.errors import InputError, SeqbenchError, check_choice
from seqbench.events import EventKind, Progress, ignore
from seqbench.execution import executors
from seqbench.execution.executor import Executor, InProcessExecutor, RunOutcome
from seqbench.execution.executors import ExecutorChoice
from seqbench.execution.grid import GridSpec, expand, plan_grid_runs, run_grid
from seqbench.execution.plan import plan_grid
from seqbench.execution.planned import PlannedRun, run_label
from seqbench.execution.processes import available_cores, check_jobs, default_jobs
from seqbench.losses.registry import LOSSES
from seqbench.models.registry import MODELS
from seqbench.names import SAFE_NAME
from seqbench.policies import REAL_DATA_SEEDS, SYNTHETIC_EPOCHS
from seqbench.presets import preset
from seqbench.reporting import frame_records, write_figures
from seqbench.reporting.markdown_report import write_report
from seqbench.reporting.reference import published, source_for
from seqbench.reporting.stats import ADJUSTMENTS, TESTS
from seqbench.reporting.study import (
    SELECTIONS,
    TABLE_CHOICES,
    StudyRequest,
    StudyTables,
    build_tables,
    select_runs,
    verdict_records,
)
from seqbench.services.tune_grid import plan_tuning, tune_grid
from seqbench.storage.records import document, run_records
from seqbench.storage.store import RunStore, stale_reason
from seqbench.tracking import make_tracker
from seqbench.training.reevaluate import evaluate_stored


@dataclass
class CompareRequest:
    """One ``compare``: the grid (comma-separated names, as on the command line), training, tables."""

    datasets: str = "synthetic"
    models: str = "gru4rec,sasrec"
    losses: str = "bce,ce,cce"
    seeds: str | None = None  # None: REAL_DATA_SEEDS on real data sets, 0 on synthetic alone
    preset: str | None = None
    epochs: int | None = None  # None: SYNTHETIC_EPOCHS on synthetic alone, else the config's
    device: str | None = None
    sets: list[str] = field(default_factory=list)  # --set key=value (a comma list is a sweep axis)
    table: str = "grid"
    proposed: str | None = None  # None: cce when it is in --losses, else the last of them (and a note says so)
    baselines: str | None = None
    source: str = ""  # "": the table of the --preset's paper, else li2023_cce_table2 (reference.source_for)
    test: str = "hierarchical"
    adjust: str = "holm"
    alpha: float = 0.05
    runs: str = "grid"  # which stored runs the tables use: SELECTIONS
    train: bool = True
    retry_failed: bool = False
    where: ExecutorChoice = field(default_factory=ExecutorChoice)  # --executor, --jobs, Ray's options
    data_dir: Path = Path("data")
    results: Path = Path("results")
    mirror: Path | None = None
    log_to: str | None = None
    plots: Path | None = None
    report_dir: Path | None = None
    tune: int | None = None  # --tune T: every loss tuned with T trials, shown as setting "tuned"


@dataclass
class Grid:
    """The planned grid: its axes (as the tables name them), what every run is given, its run configs."""

    names: dict[str, list[Any]]  # datasets, models, losses, seeds
    overrides: dict[str, Any]  # --set, --preset, --epochs, --device (a comma list is still a sweep)
    configs: list[RunConfig]
    proposed: str = "cce"  # the loss Improve. is about: --proposed, else cce, else the last of --losses
    notes: list[str] = field(default_factory=list)  # said with the tables (how the proposed loss was chosen)


@dataclass
class CompareResult:
    study: StudyTables
    figures: list[Path]  # --plots: the figures written
    report: Path | None = None  # --report: the Markdown file written


def check_request(request: CompareRequest) -> None:
    """The request's choices, before anything is planned or trained."""
    check_choice("table", request.table, TABLE_CHOICES)
    request.where.check()
    check_choice("test", request.test, TESTS)
    check_choice("adjustment", request.adjust, ADJUSTMENTS)
    check_choice("run selection", request.runs, SELECTIONS)
    if not 0 < request.alpha < 1:
        raise InputError(f"--alpha must be between 0 and 1, got {request.alpha}")
    published(source_for(request.source, request.preset))  # an unknown --source fails here, not after the grid has trained
    RunStore(request.results).check_writable()  # a --results that is a file or read-only: one message, any mode


# --- planning ---------------------------------------------------------------------------------
def known_losses(proposed: str, baselines: str | None) -> None:
    """--proposed and --baselines name registered losses (a variant ``sampled-ce[...]`` counts as its loss)."""
    for option, name in [("--proposed", proposed), *(("--baselines", b) for b in (parse_list(baselines, "baseline") if baselines else []))]:
        if base_loss(name) not in LOSSES.names():
            raise InputError(f"unknown loss '{name}' in {option}: choose from {', '.join(LOSSES.names())}")


def proposed_loss(request: CompareRequest, losses: list[str]) -> tuple[str, list[str]]:
    """The loss the grid's Improve. column is about, and a note when it was not given: --proposed
    must be one of --losses; without it, cce when present, else the last of --losses (said)."""
    names = {base_loss(loss) for loss in losses}
    if request.proposed is not None:
        if request.table in ("grid", "all") and base_loss(request.proposed) not in names:
            raise InputError(f"--proposed {request.proposed} is not among --losses {','.join(losses)}: "
                             f"name one of them with --proposed (e.g. --proposed {losses[-1]})")
        return request.proposed, []
    if "cce" in names:
        return "cce", []
    return losses[-1], [f"Improve. compares {losses[-1]} (the last of --losses; cce is not among them) with the others: "
                        "--proposed NAME chooses another."]


def known_datasets(data_dir: Path) -> list[str]:
    """Registered data sets plus any prepared directory (a user's own data set counts too)."""
    # Hidden folders (.raw, temporary ones) and names no data set may have are not candidates.
    prepared = [p.name for p in Path(data_dir).glob("*") if p.is_dir() and SAFE_NAME.fullmatch(p.name) and is_prepared(p.name, data_dir)]
    return sorted(set(load_registry().names()) | set(prepared))


def grid_names(datasets: str, models: str, losses: str, seeds: str | None, data_dir: Path) -> dict[str, list[Any]]:
    """The grid's axes from comma lists, each name checked; the seeds policy when none are given."""
    dataset_names = parse_list(datasets, "dataset", known_datasets(data_dir))
    if seeds is None:
        seeds = "0" if dataset_names == ["synthetic"] else ",".join(map(str, REAL_DATA_SEEDS))
    seed_values = parse_int_list(seeds, "--seeds")
    return {
        "datasets": dataset_names,
        "models": parse_list(models, "model", sorted(MODELS)),
        "losses": parse_list(losses, "loss", LOSSES.names()),
        "seeds": seed_values,
    }


def grid_overrides(names: dict[str, list[Any]], epochs: int | None, device: str | None, sets: list[str]) -> dict[str, Any]:
    """What every run of the grid (and every tuning trial) is given; the epochs policy applies
    when --epochs is not given."""
    overrides: dict[str, Any] = parse_assignments(sets)
    if epochs is not None:
        overrides["epochs"] = epochs
    elif "epochs" not in overrides and names["datasets"] == ["synthetic"]:
        overrides["epochs"] = SYNTHETIC_EPOCHS
    if device is not None:
        overrides["device"] = device
    return overrides


def grid_configs(names: dict[str, list[Any]], overrides: dict[str, Any]) -> list[RunConfig]:
    """Every run of the grid as a validated config."""
    spec = GridSpec(names["datasets"], names["models"], names["losses"], names["seeds"], overrides)
    return expand(spec)


def plan(request: CompareRequest) -> Grid:
    seeds = request.seeds
    if seeds is None and request.preset and preset(request.preset).seeds:  # the paper's own seeds
        seeds = ",".join(map(str, preset(request.preset).seeds))
    names = grid_names(request.datasets, request.models, request.losses, seeds, request.data_dir)
    proposed, notes = proposed_loss(request, names["losses"])
    known_losses(proposed, request.baselines)
    sets = [*([f"paper_preset={request.preset}"] if request.preset else []), *request.sets]
    overrides = grid_overrides(names, request.epochs, request.device, sets)
    return Grid(names, overrides, grid_configs(names, overrides), proposed, notes)


def dry_run(request: CompareRequest, grid: Grid) -> list[dict[str, Any]]:
    """``--dry-run``: one row per run (label, run id, stored status, action, estimated seconds)."""
    return plan_grid(plan_grid_runs(grid.configs, InProcessExecutor()), RunStore(request.results), request.retry_failed)


def tune_plan(request: CompareRequest, grid: Grid) -> list[dict[str, Any]]:
    """``--tune T --dry-run``: per cell the trials stored and to run, the retrain runs, an estimate."""
    if request.tune is None:
        raise ValueError("tune_plan needs a request with --tune trials")
    return plan_tuning(grid.configs, grid.names, request.tune, grid.overrides, request.data_dir, request.results)


def plan_document(rows: list[dict[str, Any]], preset_plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``--dry-run --json`` document."""
    todo = [row for row in rows if row["action"] != "skip"]
    known = [row["estimated_seconds"] for row in todo if row["estimated_seconds"] is not None]
    return document("plan", runs=rows, to_train=len(todo), estimated_seconds=sum(known) if known else None, preset=preset_plan)


def preset_plan(request: CompareRequest, grid: Grid) -> dict[str, Any] | None:
    """``--preset P --dry-run``: per data set, model and loss of the grid, every value the preset
    sets as the runs will get it (an explicit option wins: then ``overridden`` names it), and what
    the preset cannot know."""
    if not request.preset:
        return None
    chosen = preset(request.preset)
    cells, seen = [], set()
    for config in grid.configs:
        cell = (config.dataset, config.model, config.loss)
        if cell in seen:
            continue
        seen.add(cell)
        wanted = chosen.values(config.dataset, config.loss)
        applied = {key: _config_value(config, key) for key in wanted if _applies(config, key)}
        overridden = sorted(key for key, value in applied.items() if value != wanted[key])
        cells.append({"dataset": config.dataset, "model": config.model, "loss": config.loss, "values": applied, "overridden": overridden})
    return {"name": request.preset, "description": chosen.description, "cells": cells, "unknown": chosen.unknown,
            "seeds": list(chosen.seeds)}


def _applies(config: RunConfig, key: str) -> bool:
    """A scoped key (``sasrec.dropout``, ``nce.c``) concerns only runs of that model or loss."""
    scope, dot, _ = key.partition(".")
    return not dot or scope in (config.model, config.loss, "model", "loss")


def _config_value(config: RunConfig, key: str) -> Any:
    scope, dot, name = key.partition(".")
    if not dot:
        return getattr(config, key)
    params = config.model_params if scope in (config.model, "model") else config.loss_params
    return params.get(name)


# --- training ---------------------------------------------------------------------------------
def make_executor(request: CompareRequest) -> Executor:
    """The executor the request names (joining or starting Ray for ``ray``)."""
    return executors.make_executor(request.where)


def prepare(request: CompareRequest, grid: Grid) -> None:
    """Every data set prepared and every config checked against its catalogue, before any training
    (``check_request`` checked the store)."""
    for dataset in grid.names["datasets"]:
        ensure_prepared(dataset, request.data_dir, request.mirror)
    check_catalogues(grid.configs, request.data_dir, request.mirror)
    check_fresh(request, grid)


def check_fresh(request: CompareRequest, grid: Grid) -> None:
    """No completed run of the grid was trained on an older version of its data set (prepared again
    since with another recipe or source): its numbers would be shown, or reused, as this data's."""
    table = RunStore(request.results).table()
    if table.empty:
        return
    runs, _ = select_runs(table, grid.configs, grid.names, "grid")
    stale: list[str] = []
    for dataset in sorted(set(runs["dataset"].astype(str))) if not runs.empty else []:
        if not is_prepared(dataset, request.data_dir):
            continue  # --no-train on stored runs alone: nothing to compare them with
        fingerprint = load_dataset(dataset, request.data_dir, request.mirror).fingerprint
        for row in runs[(runs["dataset"] == dataset) & (runs["status"] == "completed")].to_dict(orient="records"):
            stale += [str(row["run_id"])] if stale_reason(row, fingerprint) else []
    if stale:
        raise InputError(f"{len(stale)} stored run(s) of this grid were trained on another version of their data set "
                         f"(prepared again since): {', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''}; remove them "
                         "(`seqbench runs rm ID ... --force`) to train them on the current data, or prepare the data as before")


def labels(grid: Grid) -> list[str]:
    """The grid's run labels, in order (a live table's rows)."""
    return [run_label(config) for config in grid.configs]


def train(request: CompareRequest, grid: Grid, executor: Executor, progress: Progress | None = None) -> list[RunOutcome]:
    """Train the grid's runs that are not stored; progress (and the ``--log-to`` tracker) sees every event."""
    runs = plan_grid_runs(grid.configs, executor)
    outcomes = run_grid(runs, request.data_dir, request.results, executor, request.mirror, request.retry_failed,
                        tracked(progress or ignore, runs, request))
    return outcomes


def incomplete_runs(request: CompareRequest, grid: Grid, outcomes: list[RunOutcome]) -> list[dict[str, Any]]:
    """The grid's runs that did not complete: failed or interrupted now, or stored so (skipped
    without --retry-failed). Runs never trained (``--no-train`` on a partial store) are not listed."""
    found = {o.run_id: {"run_id": o.run_id, "label": o.label, "status": o.status, "reason": o.reason}
             for o in outcomes if o.status in ("failed", "interrupted")}
    table = RunStore(request.results).table()
    if not table.empty:
        runs, _ = select_runs(table, grid.configs, grid.names, "grid")
        labels = {config.run_id(device): run_label(config) for config in grid.configs for device in ("cpu", "cuda")}
        for row in runs[runs["status"] != "completed"].itertuples():
            found.setdefault(str(row.run_id), {"run_id": row.run_id, "label": labels.get(str(row.run_id), str(row.run_id)),
                                               "status": row.status, "reason": str(getattr(row, "reason", "") or "")})
    return list(found.values())


def failure_note(outcomes: list[RunOutcome]) -> str | None:
    """One line on the runs that failed (the first three named), or None."""
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    if not failed:
        return None
    return (f"{len(failed)} of {len(outcomes)} runs failed: "
            + "; ".join(f"{outcome.label}: {outcome.reason}" for outcome in failed[:3])
            + (" ..." if len(failed) > 3 else "")
            + " (see `seqbench runs --status failed`; retry with --retry-failed)")


def tracked(progress: Progress, runs: list[PlannedRun], request: CompareRequest) -> Progress:
    """The grid's progress callback, mirrored into the ``--log-to`` tracker when one is named."""
    tracker = make_tracker(request.log_to, request.results, progress)
    if tracker is None:
        return progress
    tracker.planned = {run.run_id: run.config.hash_payload() for run in runs}
    return tracker


# --- tables -----------------------------------------------------------------------------------
def study_request(request: CompareRequest, grid: Grid) -> StudyRequest:
    baselines = parse_list(request.baselines, "baseline") if request.baselines else None
    return StudyRequest(grid.configs, grid.names, request.table, request.runs, grid.proposed, baselines,
                        source_for(request.source, request.preset), request.test, request.adjust, request.alpha)


def study_jobs(request: CompareRequest, grid: Grid) -> int:
    """How many tuning studies run at once on this machine: ``--jobs`` (default: cores / threads
    per run) on the local executor; with Ray the studies advance together on its cluster instead."""
    if not request.where.on_this_machine:
        return 1

    cores = available_cores()
    jobs = request.where.jobs if request.where.jobs is not None else default_jobs(grid.configs, cores)
    check_jobs(jobs, grid.configs, cores)
    return jobs


def tune(request: CompareRequest, grid: Grid, progress: Progress | None = None) -> StudyRequest:
    """The grid's study request, with the setting "tuned" beside "default" when ``--tune`` asks for it
    (:mod:`seqbench.services.tune_grid`; trials are trained unless ``--no-train``)."""
    study_req = study_request(request, grid)
    if request.tune is None:
        return study_req

    notify = progress or ignore
    figure_dirs = [request.plots, Path(request.report_dir) / "figures" if request.report_dir is not None else None]
    # With Ray the trials train on its cluster; locally --jobs studies run side by side.
    executor = make_executor(request) if not request.where.on_this_machine and request.train else None
    tuned = tune_grid(study_req, request.tune, grid.overrides, request.data_dir, request.results, request.mirror,
                      request.train, figure_dirs, update=notify, jobs=study_jobs(request, grid), executor=executor)
    for path in tuned.tuning.figures:
        notify(EventKind.NOTE, {"text": f"wrote {path}"})
    return tuned


def report(request: CompareRequest, grid: Grid, progress: Progress | None = None, study_req: StudyRequest | None = None) -> CompareResult:
    """The study's tables from the store (``study_req``: :func:`tune`'s, else the grid's own);
    ``--plots`` figures and the ``--report`` directory written."""
    notify = progress or ignore
    if not request.train:
        check_fresh(request, grid)  # training checked it already
    store = RunStore(request.results)
    study_req = study_req or study_request(request, grid)
    study = build_tables(study_req, store)
    figures = write_plots(store, study.completed, request.plots, request.data_dir, request.mirror, notify) if request.plots else []
    written = None
    if request.report_dir is not None:
        # No per-timestamp curves here: they re-evaluate every run (use --plots for those).
        report_figures = write_figures(store, study.completed, Path(request.report_dir) / "figures")
        written = write_report(Path(request.report_dir), study, study_req, report_figures)
        notify(EventKind.NOTE, {"text": f"wrote {written}"})
    for note in [*grid.notes, *study.notes]:
        notify(EventKind.NOTE, {"text": note})
    return CompareResult(study, figures, written)


def write_plots(store: Any, runs: Any, plots: Path, data_dir: Path, mirror: Path | None, notify: Progress) -> list[Path]:
    curves: dict[str, list[dict[str, float]]] = {}
    for row in runs.itertuples():
        try:
            result = evaluate_stored(row.run_id, store.root, data_dir, "test", per_timestamp=True, mirror=mirror)
        except SeqbenchError as error:  # e.g. a bidirectional model, or sequences too short
            notify(EventKind.NOTE, {"text": f"no per-timestamp curve for {row.run_id}: {error.message}"})
            continue
        curves[row.run_id] = result["per_timestamp"]
    return write_figures(store, runs, plots, per_timestamp=curves)


def as_records(value: Any) -> list[dict[str, Any]]:
    return value.records() if hasattr(value, "records") else frame_records(value)


def compare_document(request: CompareRequest, result: CompareResult, incomplete: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``compare --json`` document (``incomplete``: the grid's runs that did not complete)."""
    study = result.study
    tables = {name: as_records(value) for name, value in study.tables.items()}
    return document("compare", incomplete=incomplete or [], runs=run_records(study.runs), tables=tables,
                    verdicts=verdict_records(study.tables.get("grid")), figures=[str(p) for p in result.figures],
                    selection=request.runs, test=request.test, adjustment=request.adjust)
