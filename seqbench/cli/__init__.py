"""Command line: thin wrappers that parse options and call library functions."""

import os
import sys

from seqbench.cli import compare as _compare  # noqa: F401
from seqbench.cli import memprof as _memprof  # noqa: F401

# One import per command module; importing registers the command on ``app``.
from seqbench.cli import prepare as _prepare  # noqa: F401
from seqbench.cli import reproduce as _reproduce  # noqa: F401
from seqbench.cli import runs as _runs  # noqa: F401
from seqbench.cli import train as _train  # noqa: F401
from seqbench.cli import tune as _tune  # noqa: F401
from seqbench.cli.app import app


def main() -> None:
    try:
        app()
    except SystemExit as stop:
        # Typer turns a write into a closed pipe into exit 1 and marks stdout so; for
        # ``seqbench runs | head -5`` the reader has what it wanted: end with 0.
        if stop.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
            sys.exit(0)
        raise
    except BrokenPipeError:
        # The reader went away (``seqbench runs | head -5``): what it wanted it has; end quietly,
        # with stdout pointed at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


__all__ = ["app", "main"]
