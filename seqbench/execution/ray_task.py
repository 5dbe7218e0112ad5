"""One grid cell as a Ray task: load the data on the worker, train in memory, send the run back.

Tasks never block in ``ray.get`` while they train: Ray lends a blocked task's CPUs to other
tasks, which would run more trainings at once than a node has CPUs. Progress goes to the driver's
inbox actor (:mod:`seqbench.execution.ray_progress`) without waiting.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from seqbench.errors import SeqbenchError
from seqbench.events import BatchThrottle, EventKind
from seqbench.execution.planned import PlannedRun
from seqbench.execution.ray_data import DataSource, load_on_worker
from seqbench.plugins import load_all as load_plugins
from seqbench.training.trainer import raise_for_outcome

if TYPE_CHECKING:
    from seqbench.storage.store import StoredRun


# (config, dataset, device, pretrain_cache, progress) -> (stored run, error or None)
TrainFn = Callable[..., "tuple[StoredRun, BaseException | None]"]


def torch_threads(cpus_per_run: float) -> int:
    """Intra-op threads of a run whose config leaves ``threads`` at 0: its whole CPUs, at least one.

    More threads than the CPUs Ray reserved would oversubscribe the node (Ray itself sets
    ``OMP_NUM_THREADS`` the same way). A config's ``threads > 0`` wins (the trainer pins it), and
    is what makes results equal across executors: the thread count sets the reduction order.
    """
    return max(1, math.floor(cpus_per_run))


@dataclass
class TaskResult:
    """What a task sends back: the run to store (if training got that far) and its status."""

    run_id: str
    status: str  # completed | failed | interrupted
    reason: str
    seconds: float
    stored: StoredRun | None
    host: str


class _Relay:
    """The worker's progress callback: forwards trainer events to the driver's inbox actor.

    Pushes are fire-and-forget (Ray runs one caller's actor calls in order); only :meth:`flush`,
    once training is over, waits for them, so that the driver sees them before the result.
    """

    def __init__(self, inbox: Any, run_id: str, label: str) -> None:
        self.inbox, self.run_id, self.label = inbox, run_id, label
        self.throttle = BatchThrottle()
        self.last_push: Any = None

    def __call__(self, kind: EventKind, info: dict[str, Any]) -> None:
        if not self.throttle.passes(kind):
            return
        self.last_push = self.inbox.push.remote(kind, info | {"run_id": self.run_id, "label": self.label})

    def flush(self) -> None:
        import ray  # optional: ray

        if self.last_push is not None:
            ray.get(self.last_push)


def _failure_reason(stored: StoredRun, error: BaseException | None) -> str:
    """The same reason text the local executor reports (via ``raise_for_outcome``)."""
    try:
        raise_for_outcome(stored, error)
    except SeqbenchError as failure:
        return failure.message
    except Exception as bug:
        return f"{type(bug).__name__}: {bug}"
    return ""


def train_task(
    run: PlannedRun,
    source: DataSource,
    files: dict[str, bytes],
    pretrain_cache: str,
    inbox: Any,
    train_fn: TrainFn,
    plugins: tuple[str, ...] = (),
) -> TaskResult:
    """One grid cell on a Ray worker: load the data, train in memory, return the run.

    ``files`` is the data set's object-store copy, which Ray resolved before the task started.
    """

    torch.set_num_threads(run.threads)
    run_id, host = run.run_id, socket.gethostname()
    relay = _Relay(inbox, run_id, run.label)
    relay(EventKind.RUN_START, {"host": host})
    started = time.perf_counter()
    try:
        load_plugins(list(plugins))  # the driver's plugins (a worker may have been started before they were loaded)
        dataset = load_on_worker(source, files)
        stored, error = train_fn(run.config, dataset, torch.device(run.device_type), _pretrain_dir(pretrain_cache), run.progress(relay))
    except SeqbenchError as failure:
        return TaskResult(run_id, "failed", failure.message, time.perf_counter() - started, None, host)
    except Exception as bug:  # before training started (model, loss, data): nothing to store
        return TaskResult(run_id, "failed", f"{type(bug).__name__}: {bug}", time.perf_counter() - started, None, host)
    finally:
        relay.flush()
    status = str(stored.row.get("status", "failed"))
    reason = _failure_reason(stored, error) if status == "failed" else str(stored.row.get("reason", ""))
    return TaskResult(stored.run_id, status, reason, time.perf_counter() - started, stored, host)


def _pretrain_dir(driver_cache: str) -> Path:
    """The driver's pre-training cache when this worker can write there, else a node-local one."""
    path = Path(driver_cache)
    if path.parent.is_dir() and os.access(path.parent, os.W_OK):
        return path
    return Path(tempfile.gettempdir()) / "seqbench-ray-pretrain"
