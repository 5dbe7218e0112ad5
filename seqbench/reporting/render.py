"""Render report tables as text (rich), markdown, LaTeX or CSV.

Every table is first turned into a :class:`DisplayTable` (strings plus a bold flag per cell, and
optional column groups such as one group per model), so the four formats share one layout and
differ only in markup. CSV is for machines: it is written from the numeric tidy frame, never from
the formatted strings, and carries no markup.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table
from tabulate import tabulate

from seqbench.errors import InputError


class Displayable(Protocol):
    """A report table that lays itself out (the improvement grid's :class:`GridTable`)."""

    def display(self) -> DisplayTable: ...

    def tidy(self) -> pd.DataFrame:
        """The numbers as plain rows, for ``csv``."""
        ...


FORMATS: tuple[str, ...] = ("text", "markdown", "latex", "csv")
MISSING = "-"


@dataclass
class Cell:
    text: str
    bold: bool = False


@dataclass
class DisplayTable:
    """A table ready to print: key columns (``stub``), grouped value columns, notes below."""

    title: str
    stub: list[str]
    groups: list[tuple[str, list[str]]]  # (group header or "", column headers)
    rows: list[tuple[list[str], list[Cell]]]
    notes: list[str] = field(default_factory=list)

    def flat_headers(self) -> list[str]:
        return [f"{group} {name}".strip() for group, names in self.groups for name in names]


# --- numbers as text ----------------------------------------------------------------------------
def is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt_number(value: Any, digits: int = 4) -> str:
    return MISSING if is_missing(value) else f"{float(value):.{digits}f}"


def fmt_percent(value: Any) -> str:
    return MISSING if is_missing(value) or not math.isfinite(float(value)) else f"{100 * float(value):+.2f}%"


def fmt_bytes(value: Any) -> str:
    """Bytes in the largest binary unit that keeps the number >= 1 (memory reads best that way)."""
    if is_missing(value):
        return MISSING
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def fmt_seconds(value: Any) -> str:
    return MISSING if is_missing(value) else f"{float(value):.1f} s"


def fmt_sig(value: Any) -> str:
    """Three significant digits (hyper-parameters: 0.00123, 1e-05, 64); text and booleans as they are."""
    if isinstance(value, (bool, np.bool_, str)) or is_missing(value):
        return MISSING if is_missing(value) else str(value)
    return f"{float(value):.3g}"


def fmt_p(value: Any) -> str:
    if is_missing(value):
        return MISSING
    return f"{float(value):.1e}" if float(value) < 1e-3 else f"{float(value):.3f}"


# --- DataFrame -> DisplayTable ------------------------------------------------------------------
def frame_display(frame: pd.DataFrame) -> DisplayTable:
    """A plain table from a DataFrame; ``frame.attrs`` may name per-column formats and bold rules.

    attrs keys: ``title``; ``formats`` {column: "number"|"percent"|"bytes"|"seconds"|"p"|"sig"|"text"};
    ``bold_where`` {column: boolean column} (bold that cell where the boolean is true);
    ``hidden`` [columns kept for CSV/JSON but not printed]; ``stub`` [leading key columns];
    ``headers`` {column: printed header}.
    """
    formats: dict[str, str] = frame.attrs.get("formats", {})
    bold_where: dict[str, str] = frame.attrs.get("bold_where", {})
    hidden = set(frame.attrs.get("hidden", []))
    shown = [c for c in frame.columns if c not in hidden]
    stub = [c for c in frame.attrs.get("stub", []) if c in shown]
    values = [c for c in shown if c not in stub]
    formatter = {"number": fmt_number, "percent": fmt_percent, "bytes": fmt_bytes, "p": fmt_p, "seconds": fmt_seconds, "sig": fmt_sig}
    rows: list[tuple[list[str], list[Cell]]] = []
    for _, record in frame.iterrows():
        keys = [MISSING if is_missing(record[c]) else str(record[c]) for c in stub]
        cells = []
        for column in values:
            kind = formats.get(column) or ("number" if isinstance(record[column], float) else "text")
            text = formatter[kind](record[column]) if kind in formatter else (MISSING if is_missing(record[column]) else str(record[column]))
            bold = column in bold_where and bool(record[bold_where[column]])
            cells.append(Cell(text, bold))
        rows.append((keys, cells))
    headers: dict[str, str] = frame.attrs.get("headers", {})
    return DisplayTable(frame.attrs.get("title", ""), [headers.get(c, c) for c in stub],
                        [("", [headers.get(c, c) for c in values])], rows, list(frame.attrs.get("notes", [])))


# --- the four formats ---------------------------------------------------------------------------
def to_rich(table: Displayable | pd.DataFrame) -> Table:
    """A rich Table (bold where the layout says) for a terminal; the CLI may print it directly."""
    display = _display(table)
    out = Table(title=display.title or None, box=box.SIMPLE_HEAD, show_lines=False)
    for name in display.stub:
        out.add_column(rich_escape(name), no_wrap=True)
    for group, names in display.groups:
        for i, name in enumerate(names):
            # A group's name heads only its first column: rich cannot span, and repeats read as noise.
            header = f"{group if i == 0 else ''}\n{name}" if group else name
            out.add_column(rich_escape(header), justify="right", no_wrap=True)
    for keys, cells in display.rows:
        texts = [rich_escape(c.text) for c in cells]
        out.add_row(*[rich_escape(k) for k in keys], *[f"[bold]{t}[/bold]" if c.bold else t for t, c in zip(texts, cells)])
    if display.notes:
        out.caption = rich_escape(" ".join(display.notes))
    return out


def _natural_width(display: DisplayTable) -> int:
    """Characters the widest row needs, so a string rendering never wraps or crops a cell."""
    columns = [[name] for name in display.stub] + [[group, name] for group, names in display.groups for name in names]
    for keys, cells in display.rows:
        for column, text in zip(columns, [*keys, *(c.text for c in cells)]):
            column.append(text)
    return sum(max(len(text) for text in column) + 3 for column in columns) + 4


def render_text(table: Displayable | pd.DataFrame, width: int | None = None) -> str:
    """Plain-text rendering (a rich table without colour); ``width`` defaults to what fits."""
    console = Console(file=io.StringIO(), width=width or max(80, _natural_width(_display(table))),
                      color_system=None, force_terminal=False)
    console.print(to_rich(table))
    return console.file.getvalue()  # type: ignore[attr-defined]


def render_markdown(table: Displayable | pd.DataFrame) -> str:
    display = _display(table)
    body = [keys + [f"**{c.text}**" if c.bold else c.text for c in cells] for keys, cells in display.rows]
    text = tabulate(body, headers=display.stub + display.flat_headers(), tablefmt="github", disable_numparse=True)
    title = f"**{display.title}**\n\n" if display.title else ""
    notes = "".join(f"\n\n{note}" for note in display.notes)
    return f"{title}{text}{notes}\n"


LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                 "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def latex_escape(text: str) -> str:
    escaped = "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    return escaped.replace("±", r"$\pm$")


def render_latex(table: Displayable | pd.DataFrame) -> str:
    """A booktabs tabular; model groups become \\multicolumn headers with \\cmidrule underneath."""
    display = _display(table)
    n_values = sum(len(names) for _, names in display.groups)
    lines = [r"\begin{table}[t]", r"\centering"]
    if display.title:
        lines.append(rf"\caption{{{latex_escape(display.title)}}}")
    lines += [rf"\begin{{tabular}}{{{'l' * len(display.stub)}{'r' * n_values}}}", r"\toprule"]
    if any(group for group, _ in display.groups):
        heads, rules, column = [""] * len(display.stub), [], len(display.stub) + 1
        for group, names in display.groups:
            heads.append(rf"\multicolumn{{{len(names)}}}{{c}}{{{latex_escape(group)}}}")
            rules.append(rf"\cmidrule(lr){{{column}-{column + len(names) - 1}}}")
            column += len(names)
        lines += [" & ".join(heads) + r" \\", " ".join(rules)]
    headers = [latex_escape(h) for h in display.stub] + [latex_escape(n) for _, names in display.groups for n in names]
    lines += [" & ".join(headers) + r" \\", r"\midrule"]
    for keys, cells in display.rows:
        texts = [rf"\textbf{{{latex_escape(c.text)}}}" if c.bold else latex_escape(c.text) for c in cells]
        lines.append(" & ".join([latex_escape(k) for k in keys] + texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\small {latex_escape(note)}" for note in display.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def render_csv(table: Displayable | pd.DataFrame) -> str:
    frame = table if isinstance(table, pd.DataFrame) else table.tidy()
    return frame.to_csv(index=False)


def render(table: Displayable | pd.DataFrame, fmt: str) -> str:
    """Render a report table (a :class:`GridTable` or a reference/frontier DataFrame) as ``fmt``.

    ``fmt`` is one of ``text`` (rich, plain characters), ``markdown`` (bold as ``**x**``),
    ``latex`` (booktabs, bold as ``\\textbf{x}``) or ``csv`` (the numeric tidy rows, no markup).
    """
    renderers = {"text": render_text, "markdown": render_markdown, "latex": render_latex, "csv": render_csv}
    if fmt not in renderers:
        raise InputError(f"unknown format '{fmt}': choose one of {', '.join(FORMATS)}")
    return renderers[fmt](table)


def _display(table: Displayable | pd.DataFrame) -> DisplayTable:
    if isinstance(table, pd.DataFrame):
        return frame_display(table)
    return table.display()
