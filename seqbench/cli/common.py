"""What every command shares: the error-to-exit-code contract, JSON and console output (options: :mod:`seqbench.cli.options`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.rule import Rule
from rich.text import Text

from seqbench.coerce import parse_list
from seqbench.errors import InputError, RuntimeFailure, SeqbenchError, Terminated

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

    def on_broken_pipe(self) -> None:
        """The reader of a pipe went away (``seqbench runs | head -5``): it has what it wanted, so
        end quietly with 0 (rich's own answer is exit 1, which fails a script's pipeline)."""
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0)

    def rule(self, title: str | Text = "", *, characters: str = "─", style: Any = "rule.line", align: Any = "center") -> None:
        width = None if self.is_terminal else max(PIPE_RULE_WIDTH, len(title) + 8)
        self.print(Rule(title, characters=characters, style=style, align=align), width=width)


# Progress and logs go to stderr so that --json leaves exactly one document on stdout.
err_console = StreamConsole(stderr=True)
out_console = StreamConsole()

# How allocators word an out-of-memory RuntimeError (CUDA's says "out of memory", the CPU's not).
OOM_PHRASES = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def guarded(work: Callable[[], T], debug: bool = False, as_json: bool = False) -> T:
    """Run a command body; turn known failures into a one-line error and the contract's exit code
    (with ``--json``, also one JSON object ``{"error": ..., "exit_code": ...}`` on stdout)."""
    try:
        with sigterm_as_interrupt():
            return work()
    except SeqbenchError as error:
        fail(error.message, error.exit_code, debug, as_json)
    except Terminated:
        fail("terminated (SIGTERM); the runs in progress are stored as interrupted", 143, debug, as_json)
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
        import traceback  # lazy: start-up

        traceback.print_exc()
    print_error(message, as_json, code)
    raise typer.Exit(code)


def print_error(message: str, as_json: bool, code: int) -> None:
    """``error: <message>`` on stderr, one line; the message is plain text, never rich markup."""
    from rich.text import Text  # lazy: start-up

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


def env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value) if value else default


__all__ = [
    "InputError",
    "RuntimeFailure",
    "StreamConsole",
    "emit_json",
    "err_console",
    "fail",
    "guarded",
    "out_console",
    "parse_list",
]


def use_plugins(specs: list[str] | None, **names: str | None) -> dict[str, str | None]:
    """Load the plugins (entry points, ``SEQBENCH_PLUGINS``, ``--plugin``), then turn the import
    paths in the given name options (``--losses cce,mypkg:FocalCE``) into registered names."""
    from seqbench import plugins  # lazy: torch

    plugins.load_all(specs)
    kinds = {"loss": "loss", "losses": "loss", "proposed": "loss", "baselines": "loss", "model": "model", "models": "model"}
    return {option: None if text is None else plugins.resolve(text, kinds[option]) for option, text in names.items()}
