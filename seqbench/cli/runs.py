"""``seqbench runs``: list, show and clean up stored runs.

``seqbench runs`` lists; ``runs show ID`` prints one run; ``runs rm ID...`` and ``runs gc`` remove
runs. "Unreferenced" (what ``gc`` may remove) means: a run that no report uses, i.e. one stored as
``failed`` or ``interrupted`` (reports only read completed runs), and a directory under ``runs/``
that is no readable run (the leftover of a crashed write). ``gc`` never removes a completed run;
``rm`` removes one only with ``--force``.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from seqbench.cli.app import app
from seqbench.cli.common import emit_json, err_console, guarded, out_console
from seqbench.cli.options import (
    DEFAULT_RESULTS,
    DebugOption,
    JsonOption,
    QuietOption,
    ResultsOption,
    SubResultsOption,
)
from seqbench.errors import InputError, unknown_name

if TYPE_CHECKING:
    import pandas as pd

runs_app = typer.Typer(
    help="List stored runs (the default), show one, remove failed or unreferenced ones.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(runs_app, name="runs")

RUN_COLUMNS = [
    "run_id", "status", "dataset", "model", "loss", "seed", "config",
    "best_epoch", "epochs_run", "train_seconds", "peak_memory_bytes", "test_HR@10", "test_NDCG@10",
]
LIST_FORMATS = ("text", "markdown", "csv")
# Fields that are already columns of their own, or say where a run ran rather than what it is.
IDENTITY_FIELDS = ("dataset", "model", "loss", "seed", "device")
SPARK = "▁▂▃▄▅▆▇█"


def _results(ctx: typer.Context, given: Path | None) -> Path:
    """A sub-command's --results, else the one given before it (``runs --results R show``)."""
    if given is not None:
        return given
    return (ctx.obj or {}).get("results") or DEFAULT_RESULTS


# --- the config column --------------------------------------------------------------------------
def config_delta(config: dict[str, Any]) -> str:
    """The config fields that differ from the protocol defaults, as ``key=value`` (space-separated).

    Two runs of "gru4rec bce seed 0" differ in exactly these, so the column tells them apart.
    """
    from seqbench.config import RunConfig  # lazy: start-up

    defaults = dataclasses.asdict(RunConfig())
    defaults["ks"] = list(RunConfig().ks)
    parts = []
    for key in sorted(config):
        value = config[key]
        if key in IDENTITY_FIELDS:
            continue
        if key in ("loss_params", "model_params") and isinstance(value, dict):
            parts += [f"{name}={value[name]}" for name in sorted(value)]
        elif key in defaults and _normal(value) != _normal(defaults[key]):
            parts.append(f"{key}={_short(value)}")
    return " ".join(parts)


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _short(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def listing(table: pd.DataFrame) -> pd.DataFrame:
    """The run table with the derived ``config`` column (raw values everywhere else)."""
    from seqbench.storage.records import run_config  # lazy: start-up

    configs = [config_delta(run_config(row)) for row in table.to_dict(orient="records")]
    return table.assign(config=configs)


def pick_columns(table: pd.DataFrame, columns: str | None) -> list[str]:
    if not columns:
        return [c for c in RUN_COLUMNS if c in table.columns]
    chosen = [part.strip() for part in columns.split(",") if part.strip()]
    for name in chosen:
        if name not in table.columns:
            raise InputError(unknown_name("column", name, sorted(table.columns)))
    return chosen


def metric_columns(text: str) -> list[str]:
    """``--metrics HR@10,MRR@10`` -> the ``test_`` columns to show; unknown names are InputErrors."""
    from seqbench.measure.metrics import parse_metric  # lazy: start-up

    return [f"test_{parse_metric(part.strip()).name}" for part in text.split(",") if part.strip()]


def sort_table(table: pd.DataFrame, sort: str | None, reverse: bool) -> pd.DataFrame:
    if sort is None:
        return table
    if sort not in table.columns:
        raise InputError(unknown_name("--sort column", sort, sorted(table.columns)))
    return table.sort_values(sort, ascending=not reverse, kind="stable", na_position="last").reset_index(drop=True)


def human(table: pd.DataFrame) -> pd.DataFrame:
    """Text and markdown show bytes in KiB/MiB/GiB and seconds with a unit; CSV/JSON stay raw."""
    import pandas as pd  # lazy: start-up

    from seqbench.reporting.render import (  # lazy: start-up
        fmt_bytes,
        fmt_number,
        fmt_seconds,
    )

    shown = table.astype(object).copy()
    for column in shown.columns:
        if column.endswith("_bytes"):
            shown[column] = [fmt_bytes(v) for v in table[column]]
        elif column.endswith("_seconds"):
            shown[column] = [fmt_seconds(v) for v in table[column]]
        elif column.startswith(("test_", "valid_")) and pd.api.types.is_float_dtype(table[column]):
            shown[column] = [fmt_number(v) for v in table[column]]
    return shown.where(pd.notna(shown), "-")


def render_listing(table: pd.DataFrame, fmt: str) -> str:
    from tabulate import tabulate  # lazy: start-up

    if fmt == "csv":
        return table.to_csv(index=False)
    return tabulate(human(table), headers="keys", tablefmt="github" if fmt == "markdown" else "simple", showindex=False, disable_numparse=True) + "\n"


def check_status(status: str | None) -> None:
    from seqbench.storage.store import STATUSES  # lazy: start-up

    if status is not None and status not in STATUSES:
        raise InputError(unknown_name("status", status, STATUSES))


@runs_app.callback()
def runs(
    ctx: typer.Context,
    dataset: Annotated[str | None, typer.Option(help="Only this data set.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    loss: Annotated[str | None, typer.Option(help="Only this loss.")] = None,
    status: Annotated[str | None, typer.Option(help="completed, failed or interrupted.")] = None,
    sort: Annotated[str | None, typer.Option("--sort", help="Sort by this column (e.g. test_NDCG@10, train_seconds).")] = None,
    reverse: Annotated[bool, typer.Option("--reverse", help="Sort descending.")] = False,
    columns: Annotated[str | None, typer.Option("--columns", help="Comma-separated columns to show (any run.parquet column, or config).")] = None,
    format_: Annotated[str, typer.Option("--format", help="text, markdown or csv (csv keeps raw bytes and seconds).")] = "text",
    metrics: Annotated[str | None, typer.Option(help="Test metrics shown as columns: HR@k, NDCG@k, MRR@k or MRR (default HR@10,NDCG@10).")] = None,
    running: Annotated[
        bool,
        typer.Option("--running", help="Runs in progress instead: each one's validation curve so far (from results/running/)."),
    ] = False,
    results: ResultsOption = DEFAULT_RESULTS,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """List stored runs as a table (`runs show ID`, `runs rm ID`, `runs gc` manage them)."""
    ctx.obj = {"results": results}
    if ctx.invoked_subcommand is not None:
        return

    def work() -> None:
        from seqbench.storage.records import document, run_records  # lazy: start-up
        from seqbench.storage.store import RunStore, filter_runs  # lazy: start-up

        if running:
            return show_running(results, json_)
        check_status(status)
        if format_ not in LIST_FORMATS:
            raise InputError(unknown_name("format", format_, LIST_FORMATS))
        store = RunStore(results)
        store.check_readable()
        table = filter_runs(store.table(), dataset=dataset, model=model, loss=loss, status=status)
        if json_:
            emit_json(document("runs", runs=run_records(sort_table(table, sort, reverse) if not table.empty else table)))
            return
        if table.empty:
            err_console.print(f"no stored runs in {results} match: train one with `seqbench train`", highlight=False)
            return
        table = sort_table(listing(table), sort, reverse)
        shown = pick_columns(table, columns)
        if metrics:
            # A metric older runs did not store (MRR@k) shows as an empty cell, not an error.
            asked = metric_columns(metrics)
            table = table.reindex(columns=list(dict.fromkeys([*table.columns, *asked])))
            shown = [c for c in shown if not c.startswith("test_")] + asked
        out_console.print(render_listing(table[shown], format_), highlight=False, markup=False, end="")

    guarded(work, debug, json_)


# --- runs show ----------------------------------------------------------------------------------
def sparkline(values: list[float]) -> str:
    finite = [v for v in values if v == v]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    return "".join(" " if v != v else SPARK[int((v - low) / span * (len(SPARK) - 1))] for v in values)


def run_files(directory: Path) -> list[dict[str, Any]]:
    return [{"name": path.name, "bytes": path.stat().st_size} for path in sorted(directory.iterdir()) if path.is_file()]


def show_text(record: dict[str, Any], epochs: pd.DataFrame, files: list[dict[str, Any]], directory: Path) -> str:
    from tabulate import tabulate  # lazy: start-up

    from seqbench.reporting.render import fmt_bytes, fmt_seconds  # lazy: start-up

    training = record["training"]
    lines = [
        f"run {record['run_id']}  {record['status']}" + (f" ({record['reason']})" if record["reason"] else ""),
        f"  {record['dataset']} / {record['model']} / {record['loss']} / seed {record['seed']}  "
        f"on {training['device']}, created {record['created_at']}",
        (
            f"  best epoch {training['best_epoch']} of {training['epochs_run']}, {fmt_seconds(training['train_seconds'])} training, "
            f"peak memory {fmt_bytes(training['peak_memory_bytes'])}, {training['num_params']:,} parameters"
            if training["num_params"] is not None
            else ""
        ),
        "",
        "config (differences from the protocol defaults: " + (config_delta(record["config"]) or "none") + ")",
    ]
    lines += [f"  {key}: {value}" for key, value in sorted(record["config"].items())]
    metrics = record["metrics"]
    names = list(dict.fromkeys([*metrics["valid"], *metrics["test"]]))
    if names:
        rows = [[split, *(_num(metrics[split].get(name)) for name in names)] for split in ("valid", "test")]
        lines += ["", "metrics (best epoch)", tabulate(rows, headers=["split", *names], disable_numparse=True)]
    if not epochs.empty:
        columns = [c for c in ("epoch", "train_loss", "valid_NDCG@10", "test_NDCG@10", "train_seconds", "peak_memory_bytes") if c in epochs.columns]
        rows = [[fmt_bytes(v) if c.endswith("_bytes") else fmt_seconds(v) if c.endswith("_seconds") else _num(v) if c != "epoch" else str(v)
                 for c, v in zip(columns, values)] for values in epochs[columns].itertuples(index=False)]
        curve = sparkline(epochs["valid_NDCG@10"].tolist()) if "valid_NDCG@10" in epochs.columns else ""
        lines += ["", f"per-epoch curve (valid NDCG@10: {curve})", tabulate(rows, headers=columns, disable_numparse=True)]
    lines += ["", f"files in {directory}"] + [f"  {f['name']:<16} {fmt_bytes(f['bytes'])}" for f in files]
    return "\n".join(line for line in lines if line is not None) + "\n"


def _num(value: Any) -> str:
    return "-" if value is None or value != value else f"{float(value):.4f}"


@runs_app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    results: SubResultsOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """One run: its config, metrics, per-epoch curve and files."""

    def work() -> None:
        from seqbench.storage.records import run_record  # lazy: start-up
        from seqbench.storage.store import RunStore  # lazy: start-up

        store = RunStore(_results(ctx, results))
        store.check_readable()
        full = store.resolve(run_id)
        epochs = store.epochs(full)
        files = run_files(store.run_dir(full))
        record = run_record(store.row(full), epochs)
        if json_:
            emit_json(record | {"files": files, "log": store.log(full)})
            return
        out_console.print(show_text(record, epochs, files, store.run_dir(full)), highlight=False, markup=False, end="")

    guarded(work, debug, json_)


# --- runs rm / gc -------------------------------------------------------------------------------
def _report_removal(paths: list[tuple[str, str]], dry_run: bool, as_json: bool, store_root: Path) -> None:
    from seqbench.storage.records import document  # lazy: start-up

    if as_json:
        emit_json(document("removed", dry_run=dry_run, removed=[{"name": name, "why": why} for name, why in paths]))
        return
    verb = "would remove" if dry_run else "removed"
    for name, why in paths:
        out_console.print(f"{verb} {name} ({why})", highlight=False, markup=False)
    if not paths:
        err_console.print(f"nothing to remove in {store_root}", highlight=False)


@runs_app.command("rm")
def rm(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="Run ids or unique prefixes.")],
    force: Annotated[bool, typer.Option("--force", help="Also remove completed runs (reports use them).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
    results: SubResultsOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Remove the named runs; a completed run only with --force."""

    def work() -> None:
        from seqbench.storage.store import RunStore  # lazy: start-up

        store = RunStore(_results(ctx, results))
        store.check_readable()
        chosen = list(dict.fromkeys(store.resolve(run_id) for run_id in run_ids))
        statuses = {run_id: store.row(run_id).get("status") for run_id in chosen}
        kept = [run_id for run_id, status in statuses.items() if status == "completed" and not force]
        if kept:
            raise InputError(f"completed run(s) {', '.join(kept)}: reports use completed runs; add --force to remove them anyway")
        if not dry_run:
            for run_id in chosen:
                store.delete(run_id)
        _report_removal([(run_id, str(statuses[run_id])) for run_id in chosen], dry_run, json_, store.root)

    guarded(work, debug, json_)


@runs_app.command("gc")
def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
    results: SubResultsOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Remove what no report uses: failed and interrupted runs, and leftovers of crashed writes.

    Completed runs are never removed.
    """

    def work() -> None:
        from seqbench.storage.store import RunStore  # lazy: start-up

        store = RunStore(_results(ctx, results))
        store.check_readable()
        table = store.table()
        doomed: list[tuple[str, str]] = []
        if not table.empty:
            doomed += [(row.run_id, str(row.status)) for row in table.itertuples() if row.status in ("failed", "interrupted")]
        strays = store.stray_dirs()
        if not dry_run:
            for run_id, _ in doomed:
                store.delete(run_id)
            for path in strays:
                if path.is_symlink():
                    path.unlink()  # the link, never what it points to
                else:
                    shutil.rmtree(path, ignore_errors=True)
        doomed += [(path.name, "not a readable run: leftover of a crashed write") for path in strays]
        _report_removal(doomed, dry_run, json_, store.root)

    guarded(work, debug, json_)


def show_running(results: Path, as_json: bool) -> None:
    """``runs --running``: every run in progress with its evaluated epochs so far."""
    from seqbench.storage.records import document  # lazy: start-up
    from seqbench.training.record import live_runs  # lazy: start-up

    live = live_runs(results)
    if as_json:
        return emit_json(document("running", runs=live))
    if not live:
        err_console.print(f"no run in progress under {results}", highlight=False)
        return
    for run in live:
        state = "running" if run["alive"] else "not running (its process is gone: killed?)"
        out_console.print(
            f"{run['run_id']}  pid {run['pid']}  {state}  last line {run['seconds_since_update']:.0f}s ago", highlight=False, markup=False
        )
        for epoch in run["epochs"]:
            shown = {k: v for k, v in epoch.items() if k in ("loss", "valid_NDCG@10", "valid_HR@10", "test_NDCG@10", "best_epoch")}
            values = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
            out_console.print(f"  epoch {epoch.get('epoch')}: " + values, highlight=False, markup=False)
