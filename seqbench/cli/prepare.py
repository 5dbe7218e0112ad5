"""``seqbench prepare NAME...``: fetch, verify, parse, filter, split and store data sets."""

from __future__ import annotations

from pathlib import Path
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
    from_: Annotated[Path | None, typer.Option("--from", help="Your own interactions table (.csv, .tsv, .parquet) to prepare as --name.",
                                               show_default="none")] = None,
    name: Annotated[str | None, typer.Option("--name", help="The data set name for --from (then `--datasets NAME` anywhere).")] = None,
    user_col: Annotated[str, typer.Option("--user-col", help="--from: the user column.")] = "user",
    item_col: Annotated[str, typer.Option("--item-col", help="--from: the item column.")] = "item",
    time_col: Annotated[str, typer.Option("--time-col", help="--from: the timestamp column (numbers or dates).")] = "timestamp",
    rating_col: Annotated[str | None, typer.Option("--rating-col", help="--from: a rating column (for --min-rating).", show_default="none")] = None,
    min_rating: Annotated[float | None, typer.Option("--min-rating", help="--from: keep ratings >= this.", show_default="all")] = None,
    user_k: Annotated[int, typer.Option("--user-k", help="--from: users with fewer interactions are dropped (k-core with --item-k).")] = 5,
    item_k: Annotated[int, typer.Option("--item-k", help="--from: items with fewer interactions are dropped.")] = 5,
    dedup: Annotated[str, typer.Option("--dedup", help="--from: repeated user-item pairs: first (keep the first), exact, none.")] = "first",
    split: Annotated[str, typer.Option("--split", help="--from: leave-one-out or temporal.")] = "leave-one-out",
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    plugin: PluginOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Fetch (or read from --mirror), verify, parse, filter, split and store data sets as Parquet; print statistics."""
    from seqbench.data.local import TableRequest, prepare_table  # lazy: start-up
    from seqbench.data.prepare import list_datasets, prepare  # lazy: start-up
    from seqbench.storage.records import document  # lazy: start-up

    def work() -> None:
        use_plugins(plugin)  # formats of a registry YAML may come from a plugin
        if list_:
            rows = list_datasets(data_dir)
            emit_json(document("datasets", datasets=rows)) if json_ else _stdout().print(_list_table(rows, _stdout().width))
            return
        if from_ is not None:
            table = TableRequest(from_, name, user_col, item_col, time_col, rating_col, min_rating, user_k, item_k, dedup, split)
            rows = [prepare_table(table, data_dir, force, progress=not quiet)]
            emit_json(document("prepared", datasets=rows)) if json_ else _stdout().print(_statistics_table(rows))
            return
        if name is not None:
            raise InputError("--name names a data set made with --from FILE; registered data sets are prepared by name: `seqbench prepare NAME`")
        if not names:
            raise InputError("no data set named: give one or more names, e.g. `seqbench prepare synthetic`, or use --list")
        params = split_assignments(set_, "users=5000")
        rows = [prepare(name, data_dir, mirror, force, progress=not quiet, params=params or None) for name in names]
        emit_json(document("prepared", datasets=rows)) if json_ else _stdout().print(_statistics_table(rows))

    guarded(work, debug, json_)
