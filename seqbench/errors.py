"""Errors that the CLI turns into a one-line message and an exit code.

Library code raises these; the CLI catches them, prints ``error: <message>`` on stderr and exits
with ``exit_code`` (2 for bad usage or bad input, 1 for a runtime failure), without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SeqbenchError(Exception):
    """Base class: a problem the user can fix, described in one line."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(SeqbenchError):
    """Bad usage or bad input (unknown name, malformed file, impossible config): exit 2."""

    exit_code = 2


class RuntimeFailure(SeqbenchError):
    """The input was fine but the work failed (out of memory, NaN loss, disk full): exit 1."""

    exit_code = 1


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` - did you mean 'bce'?`` for the closest of ``choices`` to a mistyped ``name``, else ``""``."""

    # Case is the commonest slip (ndcg@10 for NDCG@10), so names are compared case-folded.
    by_folded = {str(choice).casefold(): str(choice) for choice in choices}
    close = difflib.get_close_matches(str(name).casefold(), list(by_folded), n=1, cutoff=0.6)
    return f" - did you mean {by_folded[close[0]]!r}?" if close else ""


def unknown_name(what: str, name: str, choices: Iterable[str]) -> str:
    """The one-line message for a mistyped name: the near name first, then every valid one."""
    valid = [str(choice) for choice in choices]
    hint = did_you_mean(name, valid)
    listing = ", ".join(valid)
    return f"unknown {what} '{name}'{hint} (choose from {listing})" if hint else f"unknown {what} '{name}': choose from {listing}"


def check_choice(what: str, value: str, allowed: Iterable[str]) -> None:
    """Refuse a value that is not one of a fixed few (a table, a test, a format)."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise InputError(f"unknown {what} '{value}': choose one of {', '.join(allowed)}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler, ``kill``) turned into the stop a Ctrl-C makes: the run in progress
    is stored as interrupted, worker processes are stopped (``cli.common.sigterm_as_interrupt``)."""
