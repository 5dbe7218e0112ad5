"""Command line: thin wrappers that parse options and call library functions."""

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
    app()


__all__ = ["app", "main"]
