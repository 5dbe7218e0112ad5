"""The progress inbox of the Ray executor: an actor that collects events from every worker.

Kept apart from :mod:`seqbench.execution.ray_executor` so that the actor's process imports nothing
heavy (no torch): it starts in well under a second and holds only a list.
"""

from __future__ import annotations

from typing import Any

from seqbench.events import EventKind, ProgressEvent


class ProgressInbox:
    """Workers push events without waiting; the driver drains them between results."""

    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []

    def push(self, kind: EventKind, info: dict[str, Any]) -> None:
        self.events.append(ProgressEvent(kind, info))

    def drain(self) -> list[ProgressEvent]:
        events, self.events = self.events, []
        return events
