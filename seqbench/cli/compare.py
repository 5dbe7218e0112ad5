"""``seqbench compare``: run the model x loss grid that is not stored yet, then print paper-style tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from seqbench.cli.app import app
from seqbench.cli.common import (
    DEFAULT_DATA_DIR,
    DEFAULT_RESULTS,
    DataDirOption,
    DebugOption,
    JsonOption,
    QuietOption,
    ResultsOption,
    emit_json,
    err_console,
    guarded,
    parse_list,
)
from seqbench.cli.train import LogToOption, MirrorOption, SetOption
from seqbench.errors import InputError
from seqbench.reporting.stats import ADJUSTMENTS, TESTS
from seqbench.reporting.study import SELECTIONS, TABLES, StudyRequest

FORMATS = ("text", "markdown", "latex", "csv")
# A verdict from one seed only measures user sampling (issue: one seed of LastFM SASRec-cce moved
# NDCG@10 from 0.0226 to 0.0385), so real data sets get three seeds unless --seeds says otherwise.
REAL_DATA_SEEDS = (0, 1, 2)
EXECUTORS = ("local", "ray")
# The bare command must finish in a few minutes on a laptop CPU; real data sets get the protocol's
# 150 epochs with early stopping unless --epochs says otherwise.
SYNTHETIC_EPOCHS = 5


@app.command()
def compare(
    datasets: Annotated[str, typer.Option(help="Comma-separated data sets.")] = "synthetic",
    models: Annotated[str, typer.Option(help="Comma-separated models.")] = "gru4rec,sasrec",
    losses: Annotated[str, typer.Option(help="Comma-separated losses.")] = "bce,ce,cce",
    seeds: Annotated[Optional[str], typer.Option(help=f"Comma-separated seeds (default: {','.join(map(str, REAL_DATA_SEEDS))} on real data sets, 0 on synthetic alone).")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="A paper's protocol in one word: li2023 or xu2024 (default: the protocol's).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help=f"Max epochs per run (default: {SYNTHETIC_EPOCHS} on synthetic, else 150).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    set_: SetOption = None,
    table: Annotated[str, typer.Option(help="grid, frontier, reference or all.")] = "grid",
    format_: Annotated[str, typer.Option("--format", help="text, markdown, latex or csv.")] = "text",
    proposed: Annotated[str, typer.Option(help="The loss whose improvement the grid shows.")] = "cce",
    test: Annotated[str, typer.Option("--test", help="hierarchical (seeds and users; default), bootstrap, welch or paired.")] = "hierarchical",
    adjust: Annotated[str, typer.Option("--adjust", help="Multiple-comparison adjustment per table: holm, bh or none.")] = "holm",
    alpha: Annotated[float, typer.Option("--alpha", help="Adjusted p below this marks a difference.")] = 0.05,
    runs_: Annotated[str, typer.Option("--runs", help="grid: exactly the grid's configs (default); stored: every stored run of its cells.")] = "grid",
    report_dir: Annotated[Optional[Path], typer.Option("--report", help="Write a self-contained Markdown report (tables + figures) into this directory.")] = None,
    baselines: Annotated[Optional[str], typer.Option(help="Baselines for Improve. (default: every other loss).")] = None,
    source: Annotated[str, typer.Option(help="Published results to compare with (reference table).")] = "li2023_cce_table2",
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Write figures (PNG and PDF) into this directory.")] = None,
    no_train: Annotated[bool, typer.Option("--no-train", help="Only print tables from stored runs.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the grid, what is stored, what would train and an estimate of the time; train nothing.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Train runs stored as failed again.")] = False,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster: auto or ray://host:port (default: start a local Ray).")] = None,
    cpus_per_run: Annotated[Optional[float], typer.Option("--cpus-per-run")] = None,
    gpus_per_run: Annotated[Optional[float], typer.Option("--gpus-per-run")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", help="Local runs at once, one process each (default: cores / threads per run).")] = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    results: ResultsOption = DEFAULT_RESULTS,
    mirror: MirrorOption = None,
    log_to: LogToOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Run every dataset x model x loss x seed combination not stored yet, then print tables."""

    def work() -> None:
        choice("table", table, TABLES)
        choice("format", format_, FORMATS)
        choice("executor", executor, EXECUTORS)
        choice("test", test, TESTS)
        choice("adjustment", adjust, ADJUSTMENTS)
        choice("run selection", runs_, SELECTIONS)
        if not 0 < alpha < 1:
            raise InputError(f"--alpha must be between 0 and 1, got {alpha}")
        names = grid_names(datasets, models, losses, seeds, data_dir)
        known_losses(proposed, baselines)
        configs = grid_configs(names, epochs, device, [*([f"paper_preset={preset}"] if preset else []), *(set_ or [])])
        if dry_run:
            return show_plan(configs, results, retry_failed, json_)
        if not no_train:
            train_grid(configs, names["datasets"], data_dir, results, mirror, executor_for(executor, ray_address, cpus_per_run, gpus_per_run, jobs), retry_failed, quiet, log_to)
        request = StudyRequest(configs, names, table, runs_, proposed, parse_list(baselines, "baseline") if baselines else None,
                               source, test, adjust, alpha)
        report(request, results, data_dir, format_, plots, report_dir, json_, mirror)

    guarded(work, debug, json_)


def choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"unknown {what} '{value}': choose one of {', '.join(allowed)}")


def known_losses(proposed: str, baselines: str | None) -> None:
    """--proposed and --baselines name registered losses (a variant ``sampled-ce[...]`` counts as its loss)."""
    from seqbench.losses.registry import LOSS_NAMES

    for option, name in [("--proposed", proposed), *(("--baselines", b) for b in (parse_list(baselines, "baseline") if baselines else []))]:
        if name.split("[")[0] not in LOSS_NAMES:
            raise InputError(f"unknown loss '{name}' in {option}: choose from {', '.join(LOSS_NAMES)}")


def known_datasets(data_dir: Path) -> list[str]:
    """Registered data sets plus any prepared directory (a user's own data set counts too)."""
    from seqbench.data.registry import load_registry
    from seqbench.data.sequences import is_prepared

    from seqbench.names import SAFE_NAME

    # Hidden folders (.raw, temporary ones) and names no data set may have are not candidates.
    prepared = [p.name for p in Path(data_dir).glob("*") if p.is_dir() and SAFE_NAME.fullmatch(p.name) and is_prepared(p.name, data_dir)]
    return sorted(set(load_registry().names()) | set(prepared))


def grid_names(datasets: str, models: str, losses: str, seeds: str | None, data_dir: Path) -> dict[str, list[Any]]:
    from seqbench.losses.registry import LOSS_NAMES
    from seqbench.models.registry import MODELS

    dataset_names = parse_list(datasets, "dataset", known_datasets(data_dir))
    if seeds is None:
        seeds = "0" if dataset_names == ["synthetic"] else ",".join(map(str, REAL_DATA_SEEDS))
    try:
        seed_values = [int(seed) for seed in parse_list(seeds, "seed")]
    except ValueError:
        raise InputError(f"--seeds expects comma-separated integers, got '{seeds}'") from None
    return {
        "datasets": dataset_names,
        "models": parse_list(models, "model", sorted(MODELS)),
        "losses": parse_list(losses, "loss", list(LOSS_NAMES)),
        "seeds": seed_values,
    }


def grid_configs(names: dict[str, list[Any]], epochs: int | None, device: str | None, sets: list[str]) -> list[Any]:
    from seqbench.training.config import parse_assignments
    from seqbench.training.grid import GridSpec, expand
    from seqbench.training.trainer import make_config

    overrides: dict[str, Any] = parse_assignments(sets)
    if epochs is not None:
        overrides["epochs"] = epochs
    elif "epochs" not in overrides and names["datasets"] == ["synthetic"]:
        overrides["epochs"] = SYNTHETIC_EPOCHS
    if device is not None:
        overrides["device"] = device
    spec = GridSpec(names["datasets"], names["models"], names["losses"], names["seeds"], overrides)
    return expand(spec, make_config)


def executor_for(name: str, address: str | None, cpus: float | None, gpus: float | None, jobs: int | None = None) -> Any:
    if name == "ray":
        if jobs is not None:
            raise InputError("--jobs is for the local executor: with --executor ray use --cpus-per-run")
        from seqbench.training.ray_executor import make_ray_executor

        return make_ray_executor(address, cpus, gpus)
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")
    from seqbench.training.parallel import ProcessExecutor

    return ProcessExecutor(jobs)


def train_grid(configs: list[Any], datasets: list[str], data_dir: Path, results: Path, mirror: Path | None, executor: Any, retry_failed: bool, quiet: bool, log_to: str | None = None) -> None:
    from seqbench.cli.grid_progress import GridProgress
    from seqbench.data.prepare import ensure_prepared
    from seqbench.training.grid import run_grid
    from seqbench.training.planned import run_label
    from seqbench.training.trainer import check_catalogues

    for dataset in datasets:  # fail early, before any training, if a data set is missing
        ensure_prepared(dataset, data_dir, mirror)
    check_catalogues(configs, data_dir, mirror)
    with GridProgress([run_label(config) for config in configs], quiet=quiet) as progress:
        outcomes = run_grid(configs, data_dir, results, executor, mirror, retry_failed, tracked(progress, configs, executor, results, log_to))
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    if failed and not quiet:
        err_console.print(
            f"{len(failed)} of {len(outcomes)} runs failed: "
            + "; ".join(f"{outcome.label}: {outcome.reason}" for outcome in failed[:3])
            + (" ..." if len(failed) > 3 else "")
            + " (see `seqbench runs --status failed`; retry with --retry-failed)",
            highlight=False,
        )


def show_plan(configs: list[Any], results: Path, retry_failed: bool, as_json: bool) -> None:
    """``--dry-run``: the grid, what is stored, what would train, and the estimated time."""
    from tabulate import tabulate

    from seqbench.cli.common import out_console
    from seqbench.reporting.render import fmt_seconds
    from seqbench.storage.records import document
    from seqbench.storage.store import RunStore
    from seqbench.training.grid import LocalExecutor, plan_grid_runs
    from seqbench.training.plan import plan_grid

    rows = plan_grid(plan_grid_runs(configs, LocalExecutor()), RunStore(results), retry_failed)
    todo = [row for row in rows if row["action"] != "skip"]
    known = [row["estimated_seconds"] for row in todo if row["estimated_seconds"] is not None]
    if as_json:
        return emit_json(document("plan", runs=rows, to_train=len(todo), estimated_seconds=sum(known) if known else None))
    table = [[r["run"], r["run_id"], r["stored"] or "-", r["action"], fmt_seconds(r["estimated_seconds"]), r["estimate_basis"]] for r in rows]
    out_console.print(tabulate(table, headers=["run", "run id", "stored", "action", "est. training", "estimated from"], disable_numparse=True), highlight=False, markup=False)
    total = f"about {fmt_seconds(sum(known))} of training" + (f" plus {len(todo) - len(known)} run(s) with no estimate" if len(known) < len(todo) else "")
    out_console.print(f"{len(rows)} runs in the grid, {len(rows) - len(todo)} stored, {len(todo)} would train: "
                      + (total + " (at most: early stopping may end runs sooner; evaluation comes on top)" if todo else "nothing to do"), highlight=False, markup=False)


def tracked(progress: Any, configs: list[Any], executor: Any, results: Path, log_to: str | None) -> Any:
    """The grid's progress callback, mirrored into the ``--log-to`` tracker when one is named."""
    from seqbench.tracking import make_tracker

    tracker = make_tracker(log_to, results, progress)
    if tracker is None:
        return progress
    tracker.planned = {config.run_id(executor.device_type(config)): config.hash_payload() for config in configs}
    return tracker


def report(request: StudyRequest, results: Path, data_dir: Path, fmt: str, plots: Path | None, report_dir: Path | None,
           as_json: bool, mirror: Path | None) -> None:
    from seqbench.cli.common import out_console
    from seqbench.reporting import render
    from seqbench.storage.records import document, run_records
    from seqbench.reporting.study import build_tables, verdict_records
    from seqbench.storage.store import RunStore

    store = RunStore(results)
    study = build_tables(request, store)
    figures = write_plots(store, study.completed, plots, data_dir, mirror) if plots else []
    if report_dir is not None:
        from seqbench.reporting.markdown_report import write_report

        from seqbench.reporting import write_figures

        # No per-timestamp curves here: they re-evaluate every run (use --plots for those).
        report_figures = write_figures(store, study.completed, Path(report_dir) / "figures")
        written = write_report(Path(report_dir), study, request, report_figures)
        err_console.print(f"wrote {written}", highlight=False, markup=False)
    for note in study.notes:
        err_console.print(note, highlight=False, markup=False)
    if as_json:
        emit_json(document("compare", runs=run_records(study.runs), tables={name: as_records(value) for name, value in study.tables.items()},
                           verdicts=verdict_records(study.tables.get("grid")), figures=[str(p) for p in figures],
                           selection=request.selection, test=request.test, adjustment=request.adjustment))
        return
    for name, value in study.tables.items():
        if fmt == "text":
            out_console.rule(TITLES[name])
        if getattr(value, "empty", False):  # e.g. no published numbers for these data sets
            out_console.print(" ".join(value.attrs.get("notes", [])), highlight=False, markup=False, soft_wrap=True)
            continue
        out_console.print(render(value, fmt), highlight=False, markup=False, soft_wrap=True)
        if name == "grid" and study.verdicts:
            out_console.print(study.verdict_heading + "\n" + "\n".join(f"  {line}" for line in study.verdicts), highlight=False, markup=False, soft_wrap=True)
    for path in figures:
        err_console.print(f"wrote {path}")


TITLES = {
    "grid": "Improvement grid (test metrics; Improve. = (proposed - best baseline) / best baseline)",
    "frontier": "Peak training memory versus test NDCG@10 (Pareto frontier marked)",
    "significance": "Significance of the proposed loss against the best baseline (p-values)",
    "sensitivity": "Protocol sensitivity of the verdicts",
    "reference": "Reproduced versus published",
}


def as_records(value: Any) -> list[dict[str, Any]]:
    from seqbench.reporting import frame_records

    return value.records() if hasattr(value, "records") else frame_records(value)


def write_plots(store: Any, runs: Any, plots: Path, data_dir: Path, mirror: Path | None) -> list[Path]:
    from seqbench.errors import SeqbenchError
    from seqbench.reporting import write_figures
    from seqbench.training.reevaluate import evaluate_stored

    curves: dict[str, list[dict[str, float]]] = {}
    for row in runs.itertuples():
        try:
            result = evaluate_stored(row.run_id, store.root, data_dir, "test", per_timestamp=True, mirror=mirror)
        except SeqbenchError as error:  # e.g. a bidirectional model, or sequences too short
            err_console.print(f"no per-timestamp curve for {row.run_id}: {error.message}")
            continue
        curves[row.run_id] = result["per_timestamp"]
    return write_figures(store, runs, plots, per_timestamp=curves)
