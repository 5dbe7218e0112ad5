"""Memory meters for one profiled step, and the log that cuts the step into contiguous stages.

A meter reads live and peak bytes: the allocation tracker for CPU and fake tensors, the caching
allocator's counters on CUDA. :class:`StageLog` turns meter readings into :class:`StageRecord`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from seqbench.measure.allocations import AllocationTracker


@dataclass
class StageRecord:
    name: str
    held_bytes: int  # live at the end of the stage minus live at its start
    transient_bytes: int  # the stage's peak minus live at its start
    peak_bytes: int  # the highest live total during the stage



class Meter(Protocol):
    def live(self) -> int: ...
    def peak(self) -> int: ...
    def reset_peak(self) -> None: ...


class TrackerMeter:
    """CPU and fake tensors: the dispatch-mode tracker of live storage bytes."""

    def __init__(self, tracker: AllocationTracker) -> None:
        self.tracker = tracker

    def live(self) -> int:
        return self.tracker.live_bytes

    def peak(self) -> int:
        return self.tracker.peak_bytes

    def reset_peak(self) -> None:
        self.tracker.reset_peak()


class CudaMeter:
    """CUDA: the caching allocator's own counters, relative to what was allocated before the step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline = torch.cuda.memory_allocated(device)

    def live(self) -> int:
        return torch.cuda.memory_allocated(self.device) - self.baseline

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device) - self.baseline

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)


class StageLog:
    """Contiguous stages: each begins where the previous ends, so their peaks cover the whole step."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.records: list[StageRecord] = []
        self._open: tuple[str, int] | None = None

    def begin(self, name: str) -> None:
        self.end()
        self._open = (name, self.meter.live())
        self.meter.reset_peak()

    def end(self) -> None:
        if self._open is None:
            return
        name, start = self._open
        peak, live = self.meter.peak(), self.meter.live()
        self.records.append(StageRecord(name, live - start, peak - start, peak))
        self._open = None

    def component(self, name: str, nbytes: int) -> None:
        """A size held at this moment (gradients), recorded without opening a stage."""
        self.records.append(StageRecord(name, nbytes, 0, self.meter.live()))

    def whole_step(self) -> StageRecord:
        self.end()
        peak = max(record.peak_bytes for record in self.records)
        whole = StageRecord("whole step", self.meter.live(), peak, peak)
        self.records.append(whole)
        return whole

