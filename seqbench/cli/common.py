"""What every command shares: options, the error-to-exit-code contract, JSON and console output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.rule import Rule

from seqbench.errors import InputError, RuntimeFailure, SeqbenchError, unknown_name

T = TypeVar("T")

# A stream that is not a terminal (a pipe, a log file, CI) has no width: rich would assume 80
# columns and wrap or cut every longer row. Such a stream gets a width no table reaches, so rows
# come out whole; tables are not expanded, so they keep their natural width.
PIPE_WIDTH = 10_000
# A rule (section heading) fills the width: on a pipe it gets at most this many columns.
PIPE_RULE_WIDTH = 100


class StreamConsole(Console):
    """A rich Console that prints full-width plain rows when its stream is not a terminal."""

    @property
    def size(self) -> ConsoleDimensions:
        if self.is_terminal:
            return super().size
        return ConsoleDimensions(PIPE_WIDTH, 25)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size

    def rule(self, title: str = "", *, characters: str = "─", style: Any = "rule.line", align: Any = "center") -> None:
        width = None if self.is_terminal else max(PIPE_RULE_WIDTH, len(title) + 8)
        self.print(Rule(title, characters=characters, style=style, align=align), width=width)


# Progress and logs go to stderr so that --json leaves exactly one document on stdout.
err_console = StreamConsole(stderr=True)
out_console = StreamConsole()

DataDirOption = Annotated[
    Path, typer.Option("--data-dir", envvar="SEQBENCH_DATA_DIR", help="Where prepared data sets live.")
]
ResultsOption = Annotated[
    Path, typer.Option("--results", envvar="SEQBENCH_RESULTS", help="The run store directory.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]

DEFAULT_DATA_DIR = Path("data")
DEFAULT_RESULTS = Path("results")


# How allocators word an out-of-memory RuntimeError (CUDA's says "out of memory", the CPU's not).
OOM_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def guarded(work: Callable[[], T], debug: bool = False, as_json: bool = False) -> T:
    """Run a command body; turn known failures into a one-line error and the contract's exit code
    (with ``--json``, also one JSON object ``{"error": ..., "exit_code": ...}`` on stdout)."""
    try:
        return work()
    except SeqbenchError as error:
        fail(error.message, error.exit_code, debug, as_json)
    except KeyboardInterrupt:
        fail("interrupted", 130, debug, as_json)
    except MemoryError:
        fail("out of memory: lower --batch-size or --max-len, or use --set ce_impl=chunked", 1, debug, as_json)
    except RuntimeError as error:
        if any(phrase in str(error).lower() for phrase in OOM_PHRASES):
            fail(f"out of memory ({str(error).splitlines()[0]}): lower --batch-size or use --set ce_impl=chunked", 1, debug, as_json)
        raise
    raise AssertionError("unreachable")


def fail(message: str, code: int, debug: bool = False, as_json: bool = False) -> None:
    if debug:
        import traceback

        traceback.print_exc()
    print_error(message, as_json, code)
    raise typer.Exit(code)


def print_error(message: str, as_json: bool, code: int) -> None:
    """``error: <message>`` on stderr, one line; the message is plain text, never rich markup."""
    from rich.text import Text

    line = " ".join(message.split())  # a message is one line, whatever a library put into it
    err_console.print(Text.assemble(("error:", "bold red"), " ", line), highlight=False, soft_wrap=True)
    if as_json:
        emit_json({"error": line, "exit_code": code})


def emit_json(document: Any) -> None:
    """The single JSON document of a ``--json`` run."""
    sys.stdout.write(json.dumps(document, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def parse_list(text: str | None, what: str, known: list[str] | None = None) -> list[str]:
    """Split a comma-separated option; unknown names are an input error that lists the valid ones."""
    items = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not items:
        raise InputError(f"{what} list is empty: give at least one name")
    if known is not None:
        unknown = [item for item in items if item not in known]
        if unknown:
            raise InputError(unknown_name(what, unknown[0], known))
    return items


def env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value) if value else default


__all__ = [
    "DataDirOption",
    "ResultsOption",
    "JsonOption",
    "QuietOption",
    "DebugOption",
    "guarded",
    "fail",
    "emit_json",
    "parse_list",
    "err_console",
    "out_console",
    "StreamConsole",
    "InputError",
    "RuntimeFailure",
]
