"""``seqbench prepare NAME...``: fetch, verify, parse, filter, split and store data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from seqbench.cli.app import app
from seqbench.cli.common import (
    DEFAULT_DATA_DIR,
    DataDirOption,
    DebugOption,
    JsonOption,
    QuietOption,
    emit_json,
    guarded,
    out_console,
)
from seqbench.errors import InputError

MirrorOption = Annotated[
    Optional[Path],
    typer.Option("--mirror", envvar="SEQBENCH_MIRROR", help="Offline mirror directory to read raw files from instead of downloading."),
]


def parse_assignments(values: list[str] | None) -> dict[str, str]:
    """``key=value`` pairs of ``--set``."""
    pairs: dict[str, str] = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects key=value, got '{value}': e.g. --set users=5000")
        pairs[key.strip()] = text.strip()
    return pairs


def _statistics_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Data set statistics")
    for header in ("Dataset", "Users", "Items", "Interactions", "Avg. length", "Density", "Status"):
        table.add_column(header, justify="left" if header in ("Dataset", "Status") else "right", no_wrap=True)
    for row in rows:
        table.add_row(row["name"], f"{row['users']:,}", f"{row['items']:,}", f"{row['interactions']:,}",
                      f"{row['avg_len']:.2f}", f"{row['density'] * 100:.4f}%", row["status"])
    return table


def _list_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Registered data sets")
    for header in ("Dataset", "Prepared", "Split", "Source"):
        table.add_column(header, no_wrap=True)
    table.add_column("Description", no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(row["name"], "yes" if row["prepared"] else "no", row["split"], row["source"], row["description"])
    return table


@app.command("prepare")
def prepare_command(
    names: Annotated[Optional[list[str]], typer.Argument(help="Registered data sets to prepare (see --list).", show_default=False)] = None,
    mirror: MirrorOption = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if already prepared.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List registered data sets and whether each is prepared.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Generator parameter key=value for synthetic (users, items, length, seed).")] = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Fetch (or read from --mirror), verify, parse, filter, split and store data sets as Parquet; print statistics."""
    from seqbench.data.prepare import list_datasets, prepare

    def work() -> None:
        if list_:
            rows = list_datasets(data_dir)
            emit_json(rows) if json_ else out_console.print(_list_table(rows))
            return
        if not names:
            raise InputError("no data set named: give one or more names, e.g. `seqbench prepare synthetic`, or use --list")
        params = parse_assignments(set_)
        rows = [prepare(name, data_dir, mirror, force, progress=not quiet, params=params or None) for name in names]
        emit_json(rows) if json_ else out_console.print(_statistics_table(rows))

    guarded(work, debug)
