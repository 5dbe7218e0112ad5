"""``seqbench compare``: run the model x loss grid that is not stored yet, then print paper-style tables.

The options become a :class:`~seqbench.services.compare.CompareRequest`; the service plans,
trains and builds the tables, and this module renders them (and the live table of the grid).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from seqbench.cli.app import app
from seqbench.cli.common import emit_json, err_console, guarded, out_console, use_plugins
from seqbench.cli.options import (
    DEFAULT_DATA_DIR,
    DEFAULT_RESULTS,
    CpusPerRunOption,
    DataDirOption,
    DebugOption,
    DeviceOption,
    ExecutorOption,
    GpusPerRunOption,
    JsonOption,
    LogToOption,
    MirrorOption,
    PluginOption,
    PresetOption,
    QuietOption,
    RayAddressOption,
    ResultsOption,
    SetOption,
)
from seqbench.cli.progress import show_trial_progress
from seqbench.errors import InputError, RuntimeFailure, check_choice
from seqbench.events import EventKind
from seqbench.policies import REAL_DATA_SEEDS, SYNTHETIC_EPOCHS

if TYPE_CHECKING:
    from seqbench.services import compare as service  # lazy: start-up

FORMATS = ("text", "markdown", "latex", "csv")


@app.command()
def compare(
    datasets: Annotated[str, typer.Option(help="Comma-separated data sets.")] = "synthetic",
    models: Annotated[str, typer.Option(help="Comma-separated models.")] = "gru4rec,sasrec",
    losses: Annotated[str, typer.Option(help="Comma-separated losses.")] = "bce,ce,cce",
    seeds: Annotated[
        str | None,
        typer.Option(help=f"Comma-separated seeds (default: {','.join(map(str, REAL_DATA_SEEDS))} on real data sets, 0 on synthetic alone)."),
    ] = None,
    preset: PresetOption = None,
    plugin: PluginOption = None,
    epochs: Annotated[int | None, typer.Option(help=f"Max epochs per run (default: {SYNTHETIC_EPOCHS} on synthetic, else 150).")] = None,
    device: DeviceOption = None,
    set_: SetOption = None,
    table: Annotated[str, typer.Option(help="grid, frontier, reference or all.")] = "grid",
    format_: Annotated[str, typer.Option("--format", help="text, markdown, latex or csv.")] = "text",
    proposed: Annotated[
        str | None, typer.Option(help="The loss whose improvement the grid shows (one of --losses).", show_default="cce, else the last of --losses")
    ] = None,
    test: Annotated[str, typer.Option("--test", help="hierarchical (seeds and users; default), bootstrap, welch or paired.")] = "hierarchical",
    adjust: Annotated[str, typer.Option("--adjust", help="Multiple-comparison adjustment per table: holm, bh or none.")] = "holm",
    alpha: Annotated[float, typer.Option("--alpha", help="Adjusted p below this marks a difference.")] = 0.05,
    runs_: Annotated[str, typer.Option("--runs", help="grid: exactly the grid's configs (default); stored: every stored run of its cells.")] = "grid",
    report_dir: Annotated[
        Path | None,
        typer.Option("--report", help="Write a self-contained Markdown report (tables + figures) into this directory."),
    ] = None,
    baselines: Annotated[str | None, typer.Option(help="Baselines for Improve. (default: every other loss).")] = None,
    source: Annotated[
        str, typer.Option(help="Published results to compare with (reference table).", show_default="the --preset's paper, else li2023_cce_table2")
    ] = "",
    plots: Annotated[Path | None, typer.Option("--plots", help="Write figures (PNG and PDF) into this directory.")] = None,
    no_train: Annotated[bool, typer.Option("--no-train", help="Only print tables from stored runs.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show the grid, what is stored, what would train and an estimate of the time; train nothing."),
    ] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Train runs stored as failed again.")] = False,
    allow_failed: Annotated[
        bool, typer.Option("--allow-failed", help="Exit 0 even when runs of the grid failed or were interrupted (they are still listed).")
    ] = False,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    cpus_per_run: CpusPerRunOption = None,
    gpus_per_run: GpusPerRunOption = None,
    jobs: Annotated[int | None, typer.Option("--jobs", help="Local runs at once, one process each (default: cores / threads per run).")] = None,
    tune: Annotated[
        int | None,
        typer.Option(
            "--tune",
            help="Also tune every loss with this many trials (same budget each), "
            "retrain its best config by validation with --seeds, show 'tuned' beside 'default'.",
        ),
    ] = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    results: ResultsOption = DEFAULT_RESULTS,
    mirror: MirrorOption = None,
    log_to: LogToOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Run every dataset x model x loss x seed combination not stored yet, then print tables."""

    def work() -> int:
        from seqbench.execution.executors import ExecutorChoice  # lazy: start-up
        from seqbench.services import compare as service  # lazy: start-up
        from seqbench.services.compare import CompareRequest  # lazy: start-up

        named = use_plugins(plugin, models=models, losses=losses, proposed=proposed, baselines=baselines)
        request = CompareRequest(
            datasets=datasets, models=str(named["models"]), losses=str(named["losses"]), seeds=seeds, preset=preset, epochs=epochs, device=device,
            sets=list(set_ or []), table=table, proposed=named["proposed"], baselines=named["baselines"], source=source, test=test,
            adjust=adjust, alpha=alpha, runs=runs_, train=not no_train, retry_failed=retry_failed,
            where=ExecutorChoice(executor, jobs, ray_address, cpus_per_run, gpus_per_run),
            data_dir=data_dir, results=results, mirror=mirror, log_to=log_to, plots=plots, report_dir=report_dir, tune=tune,
        )
        check_choice("format", format_, FORMATS)
        service.check_request(request)
        grid = service.plan(request)
        if dry_run:
            rows = service.dry_run(request, grid)
            if request.tune is not None:
                from seqbench.cli.plan_view import show_tune_plan  # lazy: start-up

                show_tune_plan(rows, service.tune_plan(request, grid), request.tune, json_)
                return 0
            from seqbench.cli.plan_view import show_plan  # lazy: start-up

            show_plan(rows, json_, service.preset_plan(request, grid))
            return 0
        # --tune's studies first: a bad tuning request is refused before the default grid trains
        study_request = service.tune(request, grid, None if quiet or json_ else print_tuning)
        outcomes = train_grid(request, grid, quiet) if request.train else []
        incomplete = service.incomplete_runs(request, grid, outcomes)
        try:
            result = service.report(request, grid, print_note, study_request)
        except InputError:
            if incomplete:  # nothing to tabulate because the runs failed: that is the error to report
                raise RuntimeFailure(not_completed(incomplete, len(grid.configs))) from None
            raise
        if json_:
            emit_json(service.compare_document(request, result, incomplete))
        else:
            show_tables(result, format_)
        if incomplete:  # listed whatever the exit code, --quiet included
            prefix = "warning" if allow_failed else "error"
            err_console.print(f"{prefix}: {not_completed(incomplete, len(grid.configs))}", highlight=False, markup=False, soft_wrap=True)
        return 1 if incomplete and not allow_failed else 0

    code = guarded(work, debug, json_)
    if code:
        raise typer.Exit(code)


def not_completed(incomplete: list[dict[str, Any]], total: int) -> str:
    """One line: how many runs of the grid did not complete, each with its reason, and what to do."""
    listed = "; ".join(f"{run['label']}: {run['status']}" + (f" ({run['reason']})" if run["reason"] else "") for run in incomplete)
    return (f"{len(incomplete)} of {total} runs of the grid did not complete: {listed} "
            "(retry with --retry-failed; --allow-failed exits 0 anyway)")


def print_note(kind: EventKind, info: dict[str, Any]) -> None:
    """The service's notes (files written, figures not drawn) as plain lines on stderr."""
    if kind == EventKind.NOTE:
        err_console.print(info["text"], highlight=False, markup=False)


def print_tuning(kind: EventKind, info: dict[str, Any]) -> None:
    """``--tune``: one line per trial (the tuner's events) and the service's notes."""
    print_note(kind, info) if kind == EventKind.NOTE else show_trial_progress(kind, info)


def train_grid(request: service.CompareRequest, grid: service.Grid, quiet: bool) -> list[Any]:
    from seqbench.cli.grid_progress import GridProgress  # lazy: start-up
    from seqbench.services import compare as service  # lazy: start-up

    executor = service.make_executor(request)  # joins Ray first: a wrong address fails before any preparing
    service.prepare(request, grid)
    with GridProgress(service.labels(grid), quiet=quiet) as progress:
        outcomes = service.train(request, grid, executor, progress)
    note = service.failure_note(outcomes)
    if note and not quiet:
        err_console.print(note, highlight=False)
    return outcomes


def show_tables(result: service.CompareResult, fmt: str) -> None:
    from seqbench.reporting import render  # lazy: start-up
    from seqbench.reporting.study import HEADINGS  # lazy: start-up

    study = result.study
    for name, value in study.tables.items():
        if fmt == "text":
            out_console.rule(HEADINGS.get(name, name))
        if getattr(value, "empty", False):  # e.g. no published numbers for these data sets
            out_console.print(" ".join(value.attrs.get("notes", [])), highlight=False, markup=False, soft_wrap=True)
            continue
        out_console.print(render(value, fmt), highlight=False, markup=False, soft_wrap=True)
        if name == "grid" and study.verdicts:
            verdicts = study.verdict_heading + "\n" + "\n".join(f"  {line}" for line in study.verdicts)
            out_console.print(verdicts, highlight=False, markup=False, soft_wrap=True)
    for path in result.figures:
        err_console.print(f"wrote {path}")
