"""``seqbench prepare NAME...``: fetch, verify, parse, filter, split and store data sets."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from seqbench.cli.app import app
from seqbench.cli.common import emit_json, guarded, out_console, use_plugins
from seqbench.cli.options import (
    DEFAULT_DATA_DIR,
    DataDirOption,
    DebugOption,
    GeneratorSetOption,
    JsonOption,
    PluginOption,
    PrepareMirrorOption,
    QuietOption,
)
from seqbench.coerce import split_assignments
from seqbench.errors import InputError


def _table(title: str, headers: list[str], cells: list[list[str]], squeezable: str | None = None) -> Table:
    """A table whose columns keep their full width; only ``squeezable`` is cut on narrow screens."""
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for index, header in enumerate(headers):
        width = max([len(header), *(len(row[index]) for row in cells)])
        numeric = all(row[index].replace(",", "").replace(".", "").rstrip("%").isdigit() for row in cells) and cells
        if header == squeezable:
            table.add_column(header, no_wrap=True, overflow="ellipsis", max_width=64)
        else:
            table.add_column(header, no_wrap=True, min_width=width, justify="right" if numeric else "left")
    for row in cells:
        table.add_row(*row)
    return table


def _statistics_table(rows: list[dict[str, Any]]) -> Table:
    cells = [[row["name"], f"{row['users']:,}", f"{row['items']:,}", f"{row['interactions']:,}",
              f"{row['avg_len']:.2f}", f"{row['density'] * 100:.4f}%"] for row in rows]
    return _table("Data set statistics", ["Dataset", "Users", "Items", "Interactions", "Avg. length", "Density"], cells)


def _list_table(rows: list[dict[str, Any]], width: int) -> Table:
    headers = ["Dataset", "Prepared", "Split", "Source", "Description"]
    cells = [[row["name"], "yes" if row["prepared"] else "no", row["split"], row["source"], row["description"]] for row in rows]
    if width < 100:  # a narrow terminal: the description would squeeze the other columns away
        headers, cells = headers[:-1], [row[:-1] for row in cells]
    return _table("Registered data sets", headers, cells, "Description")


def _stdout() -> Console:
    # out_console prints whole rows when stdout is a pipe (see StreamConsole).
    return out_console


@app.command("prepare")
def prepare_command(
    names: Annotated[list[str] | None, typer.Argument(help="Registered data sets to prepare (see --list).", show_default=False)] = None,
    mirror: PrepareMirrorOption = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if already prepared.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List registered data sets and whether each is prepared.")] = False,
    set_: GeneratorSetOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    plugin: PluginOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Fetch (or read from --mirror), verify, parse, filter, split and store data sets as Parquet; print statistics."""
    from seqbench.data.prepare import list_datasets, prepare  # lazy: start-up
    from seqbench.storage.records import document  # lazy: start-up

    def work() -> None:
        use_plugins(plugin)  # formats of a registry YAML may come from a plugin
        if list_:
            rows = list_datasets(data_dir)
            emit_json(document("datasets", datasets=rows)) if json_ else _stdout().print(_list_table(rows, _stdout().width))
            return
        if not names:
            raise InputError("no data set named: give one or more names, e.g. `seqbench prepare synthetic`, or use --list")
        params = split_assignments(set_, "users=5000")
        rows = [prepare(name, data_dir, mirror, force, progress=not quiet, params=params or None) for name in names]
        emit_json(document("prepared", datasets=rows)) if json_ else _stdout().print(_statistics_table(rows))

    guarded(work, debug, json_)
