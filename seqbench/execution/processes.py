"""Run the pending cells of a grid several at a time on this machine: one process per run.

``seqbench compare --jobs N`` (the ``ray`` extra is not needed). Each run trains in a fresh
process (forked from a fork server that imported torch once) through :func:`seqbench.execution.executor.execute_run`, exactly as the local
executor runs it, so the run id, the stored files and (with ``threads`` set) the numbers are the
same as one run after another. Each worker writes its own run directory atomically; the driver
only relays progress through one pipe per worker and reports outcomes.

Threads. ``threads`` is part of the run id, so the executor never changes it. A run whose config
pins ``threads = T > 0`` trains on T threads; ``jobs x T`` may not exceed the cores (two runs x
two threads on two cores measured 4-14x slower), which is an input error. A run with
``threads = 0`` ("torch's default", already machine dependent) gets ``cores // jobs`` threads.
The default ``jobs`` is ``cores // T`` (T = the largest ``threads`` of the grid, 0 counting as 1).
For numbers equal bit for bit across ``--jobs`` values set ``threads`` explicitly
(``--set threads=1``); ``jobs = 1`` runs in this process like the local executor.

Stopping (the worker processes are :mod:`seqbench.execution.workers`'): on Ctrl-C the driver sends
each running worker one SIGTERM, which stores its run as ``interrupted`` (as a Ctrl-C does to a
local run); workers that have not exited after ``STOP_GRACE_SECONDS`` (or at a second Ctrl-C) are
killed. A worker that dies (killed, out of memory) becomes a ``failed`` outcome (nothing stored,
as with Ray) and the grid goes on. A worker whose driver disappeared exits by itself, so no
process outlives the grid.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqbench.config import RunConfig
from seqbench.errors import InputError
from seqbench.events import EventKind, Progress, ignore
from seqbench.execution import workers
from seqbench.execution.executor import (
    InProcessExecutor,
    RunOutcome,
    end_info,
    execute_run,
)
from seqbench.execution.planned import PlannedRun, local_device_type, plan_runs

STOP_GRACE_SECONDS = workers.STOP_GRACE_SECONDS  # time a stopped worker has to store its interrupted run
PRELOAD = ["torch", "seqbench.training.trainer"]  # what the fork server imports once

# (planned run, data_dir, results, mirror, update) -> outcome; tests pass their own module-level one.
# The whole planned run travels, not only its config: a tuning trial's pruning rule rides on it.
WorkerFn = Callable[[PlannedRun, Path, Path, "Path | None", Progress], RunOutcome]


def available_cores() -> int:
    """CPUs this process may run on (a container's or ``taskset``'s limit, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_jobs(configs: list[RunConfig], cores: int) -> int:
    threads = max((config.threads or 1 for config in configs), default=1)
    return max(1, cores // threads)


def check_jobs(jobs: int, configs: list[RunConfig], cores: int) -> None:
    """Refuse a --jobs that would run more pinned threads than the machine has cores."""
    if jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")
    pinned = max((config.threads for config in configs), default=0)
    if jobs > 1 and pinned * jobs > cores:
        raise InputError(
            f"--jobs {jobs} runs of threads={pinned} need {jobs * pinned} cores, this machine has {cores}: "
            f"use --jobs {max(1, cores // pinned)} or leave --jobs out"
        )


def worker_threads(config: RunConfig, jobs: int, cores: int) -> int:
    return config.threads if config.threads > 0 else max(1, cores // jobs)


# --- the worker process -----------------------------------------------------------------------
def train_in_worker(run: PlannedRun, data_dir: Path, results: Path, mirror: Path | None, worker_fn: WorkerFn, relay: Progress) -> RunOutcome:
    """What a worker process runs (:func:`seqbench.execution.workers.start`): one run, its outcome."""
    return worker_fn(run, data_dir, results, mirror, relay)


# --- the driver -------------------------------------------------------------------------------
@dataclass
class _Job:
    run: PlannedRun
    worker: workers.Worker
    ended: bool = False  # a run-end event was relayed


@dataclass
class ProcessExecutor:
    """An :class:`~seqbench.execution.executor.Executor` running up to ``jobs`` runs at once, each in its own process.

    ``jobs=None`` picks the default from the cores and the grid's ``threads``; ``worker_fn`` is
    what a worker runs per config (``execute_run``; tests swap in others, module-level so that a
    spawned process can import them).
    """

    jobs: int | None = None
    worker_fn: WorkerFn = execute_run
    cores: int = field(default_factory=lambda: available_cores())  # looked up per executor (tests patch it)
    # A fork server (torch imported once, then forked per run) starts a run in a fraction of a
    # second; spawn re-imports torch per run. Plain fork would copy the driver's threads.
    context: str = "forkserver"

    def device_type(self, config: RunConfig) -> str:
        return local_device_type(config)

    def resolve_jobs(self, configs: list[RunConfig]) -> int:
        jobs = default_jobs(configs, self.cores) if self.jobs is None else self.jobs
        check_jobs(jobs, configs, self.cores)
        return max(1, min(jobs, len(configs)))

    def run(
        self, runs: Sequence[PlannedRun | RunConfig], data_dir: Path, results: Path, mirror: Path | None, update: Progress | None
    ) -> list[RunOutcome]:
        planned = plan_runs(runs, self.device_type)
        if not planned:
            return []
        jobs = self.resolve_jobs([run.config for run in planned])
        if jobs == 1 and self.worker_fn is execute_run:
            return InProcessExecutor().run(planned, data_dir, results, mirror, update)
        notify = update or ignore
        ctx = multiprocessing.get_context(self.context)
        if self.context == "forkserver":
            ctx.set_forkserver_preload(PRELOAD)
        todo = list(planned)
        running: list[_Job] = []
        outcomes: dict[int, RunOutcome] = {}
        try:
            while todo or running:
                while todo and len(running) < jobs:
                    with workers.signals_deferred():  # started and registered before a Ctrl-C is handled
                        running.append(self._start(ctx, todo.pop(0), data_dir, results, mirror, jobs))
                workers.wait_any([job.worker for job in running])
                for job in [job for job in running if self._poll(job, notify)]:
                    running.remove(job)
                    outcomes[id(job.run)] = self._finish(job, notify, "failed")
        except BaseException as cause:
            outcomes.update(self._stop(running, notify, cause))
            raise
        return [outcomes[id(run)] for run in planned]

    def _start(self, ctx: Any, run: PlannedRun, data_dir: Path, results: Path, mirror: Path | None, jobs: int) -> _Job:
        threads = worker_threads(run.config, jobs, self.cores)
        args = (run.with_threads(threads), Path(data_dir), Path(results), mirror, self.worker_fn)
        return _Job(run, workers.start(ctx, train_in_worker, args, f"seqbench:{run.label}", threads))

    @staticmethod
    def _relay(job: _Job, notify: Progress) -> workers.Notify:
        """The job's events to ``notify``, noting when its run ended."""

        def relay(kind: EventKind, info: dict[str, Any]) -> None:
            job.ended = job.ended or kind == EventKind.RUN_END
            notify(kind, info)

        return relay

    def _poll(self, job: _Job, notify: Progress) -> bool:
        """Relay the worker's events; True once it is gone."""
        return workers.poll(job.worker, self._relay(job, notify))

    def _finish(self, job: _Job, notify: Progress, missing: str) -> RunOutcome:
        """The job's outcome; a worker that died without one gets ``missing`` (failed or interrupted)."""
        worker = job.worker
        workers.reap(worker)
        outcome = worker.result
        run_id, label = job.run.run_id, job.run.label
        if worker.interrupted:
            outcome = RunOutcome(run_id, label, "interrupted", "interrupted by the user (Ctrl-C)", time.perf_counter() - worker.started)
        elif worker.error is not None:
            outcome = RunOutcome(run_id, label, "failed", f"{type(worker.error).__name__}: {worker.error}", time.perf_counter() - worker.started)
        elif outcome is None:
            if missing == "interrupted":
                reason = "interrupted by the user (Ctrl-C)"
            else:
                reason = f"worker process died ({worker.why_gone()}); nothing was stored"
            outcome = RunOutcome(run_id, label, missing, reason, time.perf_counter() - worker.started)
        if not job.ended:
            notify(EventKind.RUN_END, end_info(outcome))
        return outcome

    def _stop(self, running: list[_Job], notify: Progress, cause: BaseException) -> dict[int, RunOutcome]:
        """Ctrl-C, SIGTERM or any error: stop every worker, let it store its interrupted run, reap it."""
        workers.stop([job.worker for job in running], [self._relay(job, notify) for job in running], STOP_GRACE_SECONDS, cause)
        return {id(job.run): self._finish(job, notify, "interrupted") for job in running}
