"""Command line: thin wrappers that parse options and call library functions."""

from seqbench.cli.app import app

# One import per command module; importing registers the command on ``app``.
import seqbench.cli.memprof  # noqa: F401,E402  (registers `memprof`)


def main() -> None:
    app()


__all__ = ["app", "main"]
