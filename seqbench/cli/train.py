"""``seqbench train``, ``seqbench eval`` and ``seqbench runs``."""

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
    out_console,
)
from seqbench.cli.progress import TrainingProgress
from seqbench.errors import InputError

SetOption = Annotated[Optional[list[str]], typer.Option("--set", help="Override any config field: key=value (repeatable).")]
MirrorOption = Annotated[Optional[Path], typer.Option("--mirror", envvar="SEQBENCH_MIRROR", help="Offline mirror of raw data files.")]


def cli_overrides(**options: Any) -> dict[str, Any]:
    """CLI options that were given (None = not given), under their config field names."""
    return {key: value for key, value in options.items() if value is not None}


@app.command()
def train(
    dataset: Annotated[Optional[str], typer.Option(help="Prepared data set name (default: synthetic).")] = None,
    model: Annotated[Optional[str], typer.Option(help="gru4rec, sasrec, bert4rec or s3rec.")] = None,
    loss: Annotated[Optional[str], typer.Option(help="A loss registry name, e.g. cce, ce, bce, sce.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs (0 evaluates the untrained model).")] = None,
    patience: Annotated[Optional[int], typer.Option(help="Early-stopping patience in evaluations.")] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    max_len: Annotated[Optional[int], typer.Option("--max-len")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    time_budget: Annotated[Optional[float], typer.Option("--time-budget", help="Stop training after this many seconds.")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="A paper's protocol in one word: li2023 or xu2024.")] = None,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="YAML file of config fields.")] = None,
    set_: SetOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    results: ResultsOption = DEFAULT_RESULTS,
    mirror: MirrorOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Train one model with one loss on one data set; store the run."""

    def work() -> None:
        from seqbench.training.config import load_yaml, parse_assignments
        from seqbench.training.trainer import make_config, train_run

        base = load_yaml(config_file) if config_file else {}
        overrides = cli_overrides(
            dataset=dataset, model=model, loss=loss, epochs=epochs, patience=patience, seed=seed,
            batch_size=batch_size, max_len=max_len, device=device, time_budget=time_budget, paper_preset=preset,
        ) | parse_assignments(set_ or [])
        config = make_config(base, overrides)
        label = f"{config.dataset}/{config.model}/{config.loss}"
        with TrainingProgress(label, quiet=quiet or json_) as progress:
            stored = train_run(config, data_dir, results, mirror, progress)
        report_run(stored.row, json_)

    guarded(work, debug)


def report_run(row: dict[str, Any], as_json: bool) -> None:
    metrics = {split: split_metrics(row, split) for split in ("valid", "test")}
    document = {
        key: row[key]
        for key in ("run_id", "status", "dataset", "model", "loss", "best_epoch", "epochs_run", "train_seconds", "peak_memory_bytes")
    } | {"metrics": metrics}
    if as_json:
        emit_json(document)
        return
    test = metrics["test"]
    out_console.print(
        f"run {row['run_id']} {row['status']}: best epoch {row['best_epoch']} of {row['epochs_run']}, "
        f"{row['train_seconds']:.1f}s training, test "
        + "  ".join(f"{name} {value:.4f}" for name, value in test.items()),
        highlight=False,
    )


def split_metrics(row: dict[str, Any], split: str) -> dict[str, float]:
    """The ``<split>_METRIC`` columns of a run row (any registered metric), without the prefix."""
    from seqbench.training.metrics import is_metric

    prefix = f"{split}_"
    return {
        key[len(prefix):]: value
        for key, value in row.items()
        if key.startswith(prefix) and is_metric(key[len(prefix):])
    }


@app.command("eval")
def eval_(
    run_id: Annotated[str, typer.Argument(help="A stored run id (see `seqbench runs`).")],
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    k: Annotated[Optional[str], typer.Option("--k", help="Cut-offs, e.g. 5,10,20.")] = None,
    per_timestamp: Annotated[bool, typer.Option("--per-timestamp", help="Also NDCG@10 per sequence position.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    results: ResultsOption = DEFAULT_RESULTS,
    mirror: MirrorOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Re-evaluate a stored run's best checkpoint."""

    def work() -> None:
        from seqbench.training.trainer import evaluate_stored

        ks = None
        if k:
            try:
                ks = tuple(int(part) for part in k.split(","))
            except ValueError:
                raise InputError(f"--k expects comma-separated integers, got '{k}'") from None
        result = evaluate_stored(run_id, results, data_dir, split, ks, per_timestamp, device, mirror)
        if json_:
            emit_json(result)
            return
        out_console.print(f"{run_id} {split}: " + "  ".join(f"{n} {v:.4f}" for n, v in result["metrics"].items()), highlight=False)
        for point in result.get("per_timestamp", []):
            out_console.print(f"  position {point['position']:>3}  NDCG@10 {point['NDCG@10']:.4f}", highlight=False)

    guarded(work, debug)


RUN_COLUMNS = ["run_id", "status", "dataset", "model", "loss", "seed", "best_epoch", "epochs_run", "train_seconds", "peak_memory_bytes"]
RUN_METRICS = "HR@10,NDCG@10"


def metric_columns(text: str) -> list[str]:
    """``--metrics HR@10,MRR@10`` -> the ``test_`` columns to show; unknown names are InputErrors."""
    from seqbench.training.metrics import parse_metric

    return [f"test_{parse_metric(part).name}" for part in text.split(",") if part.strip()]


@app.command()
def runs(
    dataset: Annotated[Optional[str], typer.Option(help="Only this data set.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Only this model.")] = None,
    loss: Annotated[Optional[str], typer.Option(help="Only this loss.")] = None,
    status: Annotated[Optional[str], typer.Option(help="completed, failed or interrupted.")] = None,
    metrics: Annotated[str, typer.Option(help="Test metrics shown as columns: HR@k, NDCG@k, MRR@k or MRR.")] = RUN_METRICS,
    results: ResultsOption = DEFAULT_RESULTS,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """List stored runs as a table."""

    def work() -> None:
        from tabulate import tabulate

        from seqbench.storage.store import RunStore, filter_runs

        shown_metrics = metric_columns(metrics)
        table = filter_runs(RunStore(results).table(), dataset=dataset, model=model, loss=loss, status=status)
        if json_:
            emit_json(table.to_dict(orient="records"))
            return
        if table.empty:
            err_console.print(f"no stored runs in {results} match: train one with `seqbench train`")
            return
        # A metric that older runs did not store (MRR@k) shows as an empty cell, not an error.
        shown = table.reindex(columns=[c for c in RUN_COLUMNS if c in table.columns] + shown_metrics)
        shown = shown.astype(object).where(shown.notna(), None)
        out_console.print(
            tabulate(shown, headers="keys", tablefmt="github", showindex=False, floatfmt=".4f", missingval="-"),
            highlight=False,
        )

    guarded(work, debug)
