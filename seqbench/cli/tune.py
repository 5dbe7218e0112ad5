"""``seqbench tune``: every loss tuned with the same budget (Optuna), then the chosen configs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from seqbench.cli.app import app
from seqbench.cli.common import emit_json, err_console, guarded, out_console, use_plugins
from seqbench.cli.options import (
    DEFAULT_DATA_DIR,
    DEFAULT_RESULTS,
    CpusPerRunOption,
    DataDirOption,
    DebugOption,
    ExecutorOption,
    GpusPerRunOption,
    JsonOption,
    MirrorOption,
    PluginOption,
    QuietOption,
    RayAddressOption,
    ResultsOption,
    SetOption,
)
from seqbench.cli.progress import show_trial_progress
from seqbench.coerce import parse_int_list, parse_list
from seqbench.policies import (
    SYNTHETIC_EPOCHS,  # as for `compare`: a few epochs on synthetic, else 150
)


@app.command()
def tune(
    dataset: Annotated[str, typer.Option(help="Prepared data set name.")] = "synthetic",
    model: Annotated[str, typer.Option(help="gru4rec, sasrec, bert4rec or s3rec.")] = "sasrec",
    losses: Annotated[str, typer.Option(help="Comma-separated losses; each gets the same number of trials.")] = "bce,cce",
    trials: Annotated[int, typer.Option(help="Trials per loss (a stored study continues up to this many).")] = 12,
    seed: Annotated[int, typer.Option(help="Seed of the sampler and of every trial's training.")] = 0,
    epochs: Annotated[int | None, typer.Option(help=f"Max epochs per trial (default: {SYNTHETIC_EPOCHS} on synthetic, else 150).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    set_: SetOption = None,
    retrain_seeds: Annotated[
        str | None,
        typer.Option("--retrain-seeds", help="Retrain each loss's chosen config with these seeds, e.g. 0,1,2."),
    ] = None,
    pruner: Annotated[str, typer.Option(help="median or none.")] = "median",
    prune_warmup: Annotated[int, typer.Option("--prune-warmup", help="Never prune before this epoch.")] = 5,
    random_trials: Annotated[int, typer.Option("--random-trials", help="First trials drawn at random before TPE models the space.")] = 4,
    plots: Annotated[Path | None, typer.Option("--plots", help="Write the validation-per-trial figure (PNG and PDF) here.")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", help="Studies at once, one process each (same trials as one at a time; default 1).")] = None,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    cpus_per_run: CpusPerRunOption = None,
    gpus_per_run: GpusPerRunOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    results: ResultsOption = DEFAULT_RESULTS,
    mirror: MirrorOption = None,
    plugin: PluginOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Tune each loss over its search space with the same trial budget; print budget and choices.

    A key fixed with --set is not searched. Selection reads validation metrics only.
    """

    def work() -> None:
        from seqbench.execution.executors import (  # lazy: start-up
            ExecutorChoice,
            make_executor,
        )
        from seqbench.losses.registry import LOSSES  # lazy: start-up
        from seqbench.services.compare import grid_overrides  # lazy: start-up
        from seqbench.services.tune import tune as run_tune  # lazy: start-up
        from seqbench.tuning.studies import TuneSettings  # lazy: start-up

        named = use_plugins(plugin, losses=losses, model=model)
        names = parse_list(named["losses"], "loss", LOSSES.names())
        overrides = grid_overrides({"datasets": [dataset]}, epochs, device, set_ or [])  # as compare's grid gets them
        settings = TuneSettings(random_trials=random_trials, pruner=pruner, prune_warmup_epochs=prune_warmup)
        where = ExecutorChoice(executor, jobs, ray_address, cpus_per_run, gpus_per_run)
        where.check()
        # On a cluster the trials train through its executor, the studies advancing together.
        runner = None if where.on_this_machine else make_executor(where)
        report = run_tune(
            dataset, str(named["model"]), names, trials, data_dir, results, seed, overrides, settings,
            seed_list(retrain_seeds), plots, mirror, None if quiet or json_ else show_trial_progress, 1 if jobs is None else jobs, runner,
        )
        print_report(report, json_)

    guarded(work, debug, json_)


def seed_list(text: str | None) -> list[int] | None:
    return parse_int_list(text, "--retrain-seeds") if text else None


def print_report(report: Any, as_json: bool) -> None:
    from tabulate import tabulate  # lazy: start-up

    from seqbench.reporting import frame_records  # lazy: start-up
    from seqbench.storage.records import document  # lazy: start-up

    if as_json:
        emit_json(document("tune", **{
            "studies": {loss: {"study_id": study.study_id, "trials": frame_records(table)} for loss, (study, table) in report.studies.items()},
            "budget": frame_records(report.budget),
            "chosen": frame_records(report.chosen),
            "best_overrides": report.best,
            "retrained": frame_records(report.retrained),
            "figures": [str(path) for path in report.figures],
        }))
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
