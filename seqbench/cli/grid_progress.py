"""A live rich table of the comparison grid: one row per run, updated as runs progress."""

from __future__ import annotations

from typing import Any

from rich.live import Live
from rich.table import Table

from seqbench.cli.common import err_console
from seqbench.events import EventKind

STYLES = {"completed": "green", "failed": "red", "interrupted": "yellow", "skipped": "dim", "running": "cyan"}


class GridProgress:
    """A :data:`~seqbench.events.Progress` callback for :func:`seqbench.execution.grid.run_grid`."""

    def __init__(self, labels: list[str], quiet: bool = False) -> None:
        self.rows: dict[str, dict[str, Any]] = {label: {"status": "pending"} for label in labels}
        self.live: Live | None = None if quiet else Live(self._table(), console=err_console, refresh_per_second=4, transient=False)

    def __enter__(self) -> GridProgress:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.stop()
            if not self.live.console.is_terminal:
                # rich ends the final table with a newline only on a terminal; in a pipe or log
                # the next output would stick to the table's border.
                self.live.console.line()

    def __call__(self, event: EventKind, info: dict[str, Any]) -> None:
        row = self.rows.setdefault(info["label"], {"status": "pending"})
        if event == EventKind.RUN_START:
            row.update(status="running", detail=f"starting on {info['host']}" if info.get("host") else "starting")
        elif event == EventKind.BATCH:
            row.update(detail=f"epoch {info['epoch']} step {info['step']}/{info['steps']}")
        elif event == EventKind.EPOCH:
            row.update(detail=f"epoch {info['epoch']}", valid=info.get("valid_NDCG@10"), seconds=info.get("train_seconds"))
        elif event == EventKind.RUN_END:
            row.update(status=info["status"], detail=info.get("reason", "")[:60], test=info.get("metrics", {}).get("NDCG@10"))
        elif event == EventKind.SKIPPED:
            row.update(status="skipped", detail=info.get("reason", ""))
        elif event == EventKind.NOTE:  # another process trains this run: the row says so while it waits
            row.update(status="waiting", detail=info.get("text", "")[:60])
        if self.live is not None:
            self.live.update(self._table())

    def _table(self) -> Table:
        running = sum(row["status"] == "running" for row in self.rows.values())
        table = Table(title=f"seqbench compare ({running} running)" if running else "seqbench compare", expand=False)
        for column in ("run", "status", "progress", "valid NDCG@10", "test NDCG@10", "train s"):
            table.add_column(column)
        for label, row in self.rows.items():
            status = row["status"]
            table.add_row(
                label,
                f"[{STYLES.get(status, 'white')}]{status}[/]",
                row.get("detail", ""),
                _fmt(row.get("valid")),
                _fmt(row.get("test")),
                _fmt(row.get("seconds"), ".1f"),
            )
        return table


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "" if value is None else format(value, spec)
