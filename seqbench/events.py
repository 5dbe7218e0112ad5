"""Progress events: what a run, a grid and the compare service report while they work.

Every producer (the trainer, the grid runner, the process and Ray executors, the compare service)
calls a :data:`Progress` callback with an :class:`EventKind` and a dict of details; events that
travel between processes (a worker's pipe, Ray's inbox actor) travel as a :class:`ProgressEvent`.
The kinds are string-valued, so an event pickled by another process and a callback that compares
with the plain name (``kind == "epoch"``) both keep working.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any, NamedTuple


class EventKind(StrEnum):
    START = "start"  # the trainer: training begins (info: epochs, steps per epoch)
    BATCH = "batch"  # the trainer: one optimiser step (epoch, step, steps); executors throttle it
    EPOCH = "epoch"  # the trainer: an evaluated epoch (its epochs.parquet row and best_epoch)
    RUN_START = "run-start"  # a grid: one run starts (run_id, label; host under Ray)
    RUN_END = "run-end"  # a grid: one run ended (status, reason, test metrics)
    SKIPPED = "skipped"  # a grid: a run already stored is not trained again (reason)
    NOTE = "note"  # a service: one line for the user (text), e.g. a file written or runs that failed
    TRIAL_START = "trial-start"  # a tuner: one trial starts (loss, trial, params, run_id)
    TRIAL = "trial"  # a tuner: one trial was recorded (loss, trials, and its trials.parquet row)


BATCH_EVENT_SECONDS = 0.5  # across processes, at most two "batch" events a second per run


class BatchThrottle:
    """For events that cross processes: every kind passes, "batch" (one per optimiser step, which
    would flood the driver) at most once per :data:`BATCH_EVENT_SECONDS`."""

    def __init__(self) -> None:
        self.last_batch = 0.0

    def passes(self, kind: str) -> bool:
        if kind != EventKind.BATCH:
            return True
        now = time.monotonic()
        if now - self.last_batch < BATCH_EVENT_SECONDS:
            return False
        self.last_batch = now
        return True


class ProgressEvent(NamedTuple):
    kind: EventKind
    info: dict[str, Any]


# The one callback type of progress: ``progress(kind, info)``.
Progress = Callable[[EventKind, dict[str, Any]], None]


def ignore(kind: EventKind, info: dict[str, Any]) -> None:
    """A :data:`Progress` that drops every event (for callers that passed none)."""


class StopRun(Exception):
    """Raised by a progress callback to end a run on purpose (a tuner's pruner, after an epoch).

    The run is evaluated with its best weights and stored with status ``pruned``: a decision,
    not a failure, so nothing is re-raised to the caller.
    """
