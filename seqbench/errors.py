"""Errors that the CLI turns into a one-line message and an exit code.

Library code raises these; the CLI catches them, prints ``error: <message>`` on stderr and exits
with ``exit_code`` (2 for bad usage or bad input, 1 for a runtime failure), without a traceback.
"""

from __future__ import annotations


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
