"""``seqbench train``, ``seqbench eval`` and ``seqbench runs``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from seqbench.cli.app import app
from seqbench.cli.common import emit_json, err_console, guarded, out_console, use_plugins
from seqbench.cli.options import (
    DEFAULT_DATA_DIR,
    DEFAULT_RESULTS,
    AutoDeviceOption,
    DataDirOption,
    DebugOption,
    JsonOption,
    LogToOption,
    MirrorOption,
    PluginOption,
    PresetOption,
    QuietOption,
    ResultsOption,
    SetOption,
)
from seqbench.cli.progress import TrainingProgress
from seqbench.coerce import parse_int_list
from seqbench.config import MAX_K, RunConfig, ks_ok
from seqbench.errors import InputError

DEFAULTS = RunConfig()  # what `train --help` shows as defaults: the protocol's values



def cli_overrides(**options: Any) -> dict[str, Any]:
    """CLI options that were given (None = not given), under their config field names."""
    return {key: value for key, value in options.items() if value is not None}


LOSS_HELP = ("A loss registry name, e.g. cce, ce, bce, sce; options in brackets as memprof and compare write them: "
             "cce[chunked], sce[b_y=128] (= --set ce_impl=chunked, --set b_y=128).")


@app.command()
def train(
    dataset: Annotated[
        str | None,
        typer.Option(help="Prepared data set name (see `seqbench prepare --list`).", show_default=DEFAULTS.dataset),
    ] = None,
    model: Annotated[str | None, typer.Option(help="gru4rec, sasrec, bert4rec or s3rec.", show_default=DEFAULTS.model)] = None,
    loss: Annotated[str | None, typer.Option(help=LOSS_HELP, show_default=DEFAULTS.loss)] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (0 evaluates the untrained model).", show_default=str(DEFAULTS.epochs))] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="Early-stopping patience in evaluations without improvement.", show_default=str(DEFAULTS.patience)),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of weights, batches and negatives (part of the run id).", show_default=str(DEFAULTS.seed)),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="Training sequences per batch.", show_default=str(DEFAULTS.batch_size)),
    ] = None,
    max_len: Annotated[
        int | None,
        typer.Option("--max-len", help="Positions per input sequence (longer histories keep their last items).", show_default=str(DEFAULTS.max_len)),
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto (CUDA when present), cpu or cuda.", show_default=DEFAULTS.device)] = None,
    time_budget: Annotated[
        float | None,
        typer.Option("--time-budget", help="Stop training after the epoch that passes this many seconds.", show_default="no limit"),
    ] = None,
    preset: PresetOption = None,
    plugin: PluginOption = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="YAML file of config fields (options and --set override it).", show_default="none"),
    ] = None,
    set_: SetOption = None,
    force: Annotated[bool, typer.Option("--force", help="Train again a run that is stored as completed (a completed re-run replaces it).")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Start at epoch 1 though a stopped run of this config left a resume point.")] = False,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    results: ResultsOption = DEFAULT_RESULTS,
    mirror: MirrorOption = None,
    log_to: LogToOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Train one model with one loss on one data set; store the run."""

    def work() -> None:
        from seqbench.config import load_yaml, parse_assignments  # lazy: start-up
        from seqbench.configure import check_catalogues, loss_options, make_config  # lazy: start-up

        named = use_plugins(plugin, model=model, loss=loss)
        base = load_yaml(config_file) if config_file else {}
        assignments = parse_assignments(set_ or [])
        overrides = cli_overrides(
            dataset=dataset, model=named["model"], epochs=epochs, patience=patience, seed=seed,
            batch_size=batch_size, max_len=max_len, device=device, time_budget=time_budget, paper_preset=preset,
        ) | (loss_options(named["loss"], assignments) if named["loss"] else {}) | assignments
        config = make_config(base, overrides)
        check_catalogues([config], data_dir, mirror)
        label = f"{config.dataset}/{config.model}/{config.loss}"
        with TrainingProgress(label, quiet=quiet) as progress:  # stderr: --json keeps stdout clean
            stored = train_tracked(config, data_dir, results, mirror, progress, log_to, force, restart)
        if stored.reused and not quiet:
            err_console.print(f"run {stored.run_id} is already stored as completed: shown below, not trained again "
                              "(--force trains it again)", highlight=False, markup=False, soft_wrap=True)
        report_run(stored.row, json_)

    guarded(work, debug, json_)


def train_tracked(config: Any, data_dir: Path, results: Path, mirror: Path | None, progress: Any, log_to: str | None,
                  force: bool = False, restart: bool = False) -> Any:
    """``train_run``, mirrored into the ``--log-to`` tracker when one is named."""
    from seqbench.execution.planned import plan_run  # lazy: start-up
    from seqbench.tracking import make_tracker  # lazy: start-up
    from seqbench.training.trainer import train_run  # lazy: start-up

    tracker = make_tracker(log_to, results, progress)
    if tracker is None:
        return train_run(config, data_dir, results, mirror, progress, force, restart)
    run_id = plan_run(config).run_id
    tracker.start(run_id, config.hash_payload())
    try:
        return train_run(config, data_dir, results, mirror, tracker, force, restart)
    finally:
        tracker.end_stored(run_id)


def report_run(row: dict[str, Any], as_json: bool) -> None:
    from seqbench.storage.records import run_record  # lazy: start-up

    record = run_record(row)
    if as_json:
        emit_json(record)
        return
    test = record["metrics"]["test"]
    out_console.print(
        f"run {row['run_id']} {row['status']}: best epoch {row['best_epoch']} of {row['epochs_run']}, "
        f"{row['train_seconds']:.1f}s training, test "
        + "  ".join(f"{name} {value:.4f}" for name, value in test.items()),
        highlight=False,
    )


@app.command("eval")
def eval_(
    run_id: Annotated[str, typer.Argument(help="A stored run id or a unique prefix of one (see `seqbench runs`).")],
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    k: Annotated[str | None, typer.Option("--k", help="Cut-offs, e.g. 5,10,20.")] = None,
    per_timestamp: Annotated[bool, typer.Option("--per-timestamp", help="Also NDCG@10 per sequence position.")] = False,
    device: AutoDeviceOption = "auto",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    results: ResultsOption = DEFAULT_RESULTS,
    mirror: MirrorOption = None,
    plugin: PluginOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Re-evaluate a stored run's best checkpoint."""

    def work() -> None:
        use_plugins(plugin)  # a run of a plugin's model needs its class back
        from seqbench.training.reevaluate import evaluate_stored  # lazy: start-up

        ks = tuple(parse_int_list(k, "--k")) if k else None
        if ks is not None and not ks_ok(ks):
            raise InputError(f"--k takes cut-offs from 1 to {MAX_K:,}, got {k}")
        from seqbench.storage.records import document  # lazy: start-up

        result = evaluate_stored(run_id, results, data_dir, split, ks, per_timestamp, device, mirror)
        if json_:
            emit_json(document("evaluation", **result))
            return
        out_console.print(f"{result['run_id']} {split}: " + "  ".join(f"{n} {v:.4f}" for n, v in result["metrics"].items()), highlight=False)
        for point in result.get("per_timestamp", []):
            out_console.print(f"  position {point['position']:>3}  NDCG@10 {point['NDCG@10']:.4f}", highlight=False)

    guarded(work, debug, json_)
