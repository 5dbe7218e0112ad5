"""``seqbench tune``: every loss tuned with the same budget (Optuna), then the chosen configs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from seqbench.cli.app import app
from seqbench.cli.common import emit_json, err_console, guarded, out_console
from seqbench.cli.options import (
    CpusPerRunOption,
    DEFAULT_DATA_DIR,
    DEFAULT_RESULTS,
    DataDirOption,
    DebugOption,
    ExecutorOption,
    GpusPerRunOption,
    JsonOption,
    MirrorOption,
    RayAddressOption,
    QuietOption,
    ResultsOption,
    SetOption,
)
from seqbench.coerce import parse_list
from seqbench.errors import InputError
from seqbench.services.compare import SYNTHETIC_EPOCHS, choice, grid_overrides  # as for `compare`: a few epochs on synthetic, else 150


@app.command()
def tune(
    dataset: Annotated[str, typer.Option(help="Prepared data set name.")] = "synthetic",
    model: Annotated[str, typer.Option(help="gru4rec, sasrec, bert4rec or s3rec.")] = "sasrec",
    losses: Annotated[str, typer.Option(help="Comma-separated losses; each gets the same number of trials.")] = "bce,cce",
    trials: Annotated[int, typer.Option(help="Trials per loss (a stored study continues up to this many).")] = 12,
    seed: Annotated[int, typer.Option(help="Seed of the sampler and of every trial's training.")] = 0,
    epochs: Annotated[Optional[int], typer.Option(help=f"Max epochs per trial (default: {SYNTHETIC_EPOCHS} on synthetic, else 150).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    set_: SetOption = None,
    retrain_seeds: Annotated[Optional[str], typer.Option("--retrain-seeds", help="Retrain each loss's chosen config with these seeds, e.g. 0,1,2.")] = None,
    pruner: Annotated[str, typer.Option(help="median or none.")] = "median",
    prune_warmup: Annotated[int, typer.Option("--prune-warmup", help="Never prune before this epoch.")] = 5,
    random_trials: Annotated[int, typer.Option("--random-trials", help="First trials drawn at random before TPE models the space.")] = 4,
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Write the validation-per-trial figure (PNG and PDF) here.")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", help="Studies at once, one process each (same trials as one at a time; default 1).")] = None,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    cpus_per_run: CpusPerRunOption = None,
    gpus_per_run: GpusPerRunOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    results: ResultsOption = DEFAULT_RESULTS,
    mirror: MirrorOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Tune each loss over its search space with the same trial budget; print budget and choices.

    A key fixed with --set is not searched. Selection reads validation metrics only.
    """

    def work() -> None:
        from seqbench.losses.registry import LOSS_NAMES
        from seqbench.training.tune import TuneSettings
        from seqbench.services.tune import tune as run_tune

        names = parse_list(losses, "loss", list(LOSS_NAMES))
        overrides = grid_overrides({"datasets": [dataset]}, epochs, device, set_ or [])  # as compare's grid gets them
        settings = TuneSettings(random_trials=random_trials, pruner=pruner, prune_warmup_epochs=prune_warmup)
        choice("executor", executor, ("local", "ray"))
        runner = None
        if executor == "ray":  # the trials train on the cluster, the studies advance together
            if jobs is not None:
                raise InputError("--jobs is for the local executor: with --executor ray use --cpus-per-run")
            from seqbench.training.ray_executor import make_ray_executor

            runner = make_ray_executor(ray_address, cpus_per_run, gpus_per_run)
        report = run_tune(
            dataset, model, names, trials, data_dir, results, seed, overrides, settings,
            seed_list(retrain_seeds), plots, mirror, None if quiet or json_ else show_progress, 1 if jobs is None else jobs, runner,
        )
        print_report(report, json_)

    guarded(work, debug, json_)


def seed_list(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in parse_list(text, "seed")]
    except ValueError:
        raise InputError(f"--retrain-seeds expects comma-separated integers, got '{text}'") from None


def show_tune_plan(rows: list[dict[str, Any]], tuning: list[dict[str, Any]], trials: int, as_json: bool) -> None:
    """``compare --tune T --dry-run``: the default grid's plan, then what the tuning would add."""
    from tabulate import tabulate

    from seqbench.cli.compare import show_plan
    from seqbench.reporting.render import fmt_seconds
    from seqbench.services.compare import plan_document

    known = [row["estimated_seconds"] for row in tuning if row["estimated_seconds"] is not None]
    total = sum(known) if known else None
    if as_json:
        return emit_json(plan_document(rows) | {"tuning": tuning, "tuning_estimated_seconds": total})
    show_plan(rows, False)
    table = [[f"{r['dataset']}/{r['model']}/{r['loss']}", r["study_id"], f"{r['trials_stored']} of {trials}", r["trials_to_run"],
              r["retrain_runs"], fmt_seconds(r["estimated_seconds"]), r["estimate_basis"]] for r in tuning]
    out_console.rule(f"--tune {trials}: the same {trials} trials per loss, then the best config retrained with the grid's seeds")
    out_console.print(tabulate(table, headers=["cell", "study", "trials stored", "to run", "retrain runs", "at most", "estimated from"],
                               disable_numparse=True), highlight=False, markup=False)
    missing = len(tuning) - len(known)
    out_console.print(f"tuning: at most {fmt_seconds(total)} of training" + (f" plus {missing} cell(s) with no estimate" if missing else "")
                      + " (every trial at the full max epochs; pruning and early stopping cut it)", highlight=False, markup=False)


def show_progress(event: str, info: dict[str, Any]) -> None:
    """One line per trial started and finished (validation only: no test metric while tuning)."""
    where = f"{info['dataset']}/{info['model']}/" if "dataset" in info and "model" in info else ""
    if event == "start" and "retrain_seed" in info:
        err_console.print(f"{where}{info['loss']}: retraining the chosen config with seed {info['retrain_seed']}", highlight=False)
    if event == "trial-start":
        params = ", ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}" for key, value in info["params"].items())
        err_console.print(f"{where}{info['loss']} trial {info['trial']}: training {params}", highlight=False)
    if event != "trial":
        return
    how = "stored, not retrained" if info["reused"] else f"{info['wall_seconds']:.1f}s"
    err_console.print(
        f"{where}{info['loss']} trial {info['number']} ({info['number'] + 1} of {info['trials']}): {info['state']}, "
        f"valid {info['value']:.4f}, {info['epochs_run']} epochs ({how})",
        highlight=False,
    )


def print_report(report: Any, as_json: bool) -> None:
    from tabulate import tabulate

    from seqbench.reporting import frame_records

    if as_json:
        emit_json({
            "studies": {loss: {"study_id": study.study_id, "trials": frame_records(table)} for loss, (study, table) in report.studies.items()},
            "budget": frame_records(report.budget),
            "chosen": frame_records(report.chosen),
            "best_overrides": report.best,
            "retrained": frame_records(report.retrained),
            "figures": [str(path) for path in report.figures],
        })
        return
    sections = [("Budget per loss (equal trials and max epochs; wall time of this machine)", report.budget),
                ("Chosen hyper-parameters (best completed trial on validation)", report.chosen)]
    if not report.retrained.empty:
        sections.append(("Chosen configs retrained per seed", report.retrained))
    for title, frame in sections:
        out_console.rule(title)
        plain = frame.astype(object).where(frame.notna(), None)  # a loss without that parameter: "-"
        text = tabulate(plain, headers="keys", tablefmt="github", showindex=False, floatfmt=".4g", missingval="-")
        out_console.print(text, highlight=False, markup=False, soft_wrap=True)
    for loss, (study, _) in report.studies.items():
        err_console.print(f"{loss}: study {study.study_id}", highlight=False)
    for path in report.figures:
        err_console.print(f"wrote {path}")
