"""Run the pending cells of a grid several at a time on this machine: one process per run.

``seqbench compare --jobs N`` (the ``ray`` extra is not needed). Each run trains in a fresh
process (forked from a fork server that imported torch once) through :func:`seqbench.training.grid.execute_run`, exactly as the local
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

Stopping. Workers ignore the terminal's SIGINT: on Ctrl-C the driver sends each running worker
one SIGTERM, which the worker turns into the KeyboardInterrupt that stores its run as
``interrupted`` (as a Ctrl-C does to a local run); workers that have not exited after
``STOP_GRACE_SECONDS`` (or at a second Ctrl-C) are killed. A worker that dies (killed, out of
memory) becomes a ``failed`` outcome (nothing stored, as with Ray) and the grid goes on. A worker
whose driver disappeared exits by itself, so no process outlives the grid.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from seqbench.errors import InputError
from seqbench.config import RunConfig
from seqbench.training.events import EventKind, Progress, ProgressEvent, ignore
from seqbench.training.grid import LocalExecutor, RunOutcome, end_info, execute_run
from seqbench.training.planned import PlannedRun, local_device_type, plan_runs

POLL_SECONDS = 0.2  # how often the driver looks at its workers when none reports
BATCH_EVENT_SECONDS = 0.5  # workers forward at most two "batch" events a second per run
STOP_GRACE_SECONDS = 60.0  # time a stopped worker has to store its interrupted run
PRELOAD = ["torch", "seqbench.training.trainer"]  # what the fork server imports once

# (config, data_dir, results, mirror, update) -> outcome; tests pass their own module-level one.
WorkerFn = Callable[[RunConfig, Path, Path, "Path | None", Progress], RunOutcome]


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
class _Relay:
    """The worker's progress callback: sends trainer events down the pipe, "batch" ones throttled."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.last_batch = conn, 0.0

    def __call__(self, kind: EventKind, info: dict[str, Any]) -> None:
        if kind == EventKind.BATCH:
            now = time.monotonic()
            if now - self.last_batch < BATCH_EVENT_SECONDS:
                return
            self.last_batch = now
        self.conn.send(("event", ProgressEvent(kind, info)))


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop request; the interrupted run gets stored
    raise KeyboardInterrupt


def _exit_with_driver(conn: Connection) -> None:
    """Block on the pipe, which the driver never writes to: EOF means the driver is gone (killed)."""
    try:
        conn.recv()
    except (EOFError, OSError):
        pass
    os._exit(1)  # nobody would read this run's outcome


def worker_main(run: PlannedRun, data_dir: Path, results: Path, mirror: Path | None, conn: Connection, worker_fn: WorkerFn) -> None:
    """Entry point of a worker process: one run (on ``run.threads`` threads), its events and outcome sent down ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when workers stop
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Not the parent pid: the fork server, a worker's parent, outlives a killed driver.
    threading.Thread(target=_exit_with_driver, args=(conn,), daemon=True).start()
    import torch

    torch.set_num_threads(run.threads)
    try:
        outcome = worker_fn(run.config, data_dir, results, mirror, _Relay(conn))
    except KeyboardInterrupt:  # the trainer stored the run as interrupted before this
        outcome = RunOutcome(run.run_id, run.label, "interrupted", "interrupted by the user (Ctrl-C)")
    conn.send(("outcome", outcome))
    conn.close()


# --- the driver -------------------------------------------------------------------------------
@dataclass
class _Job:
    run: PlannedRun
    process: Any
    conn: Connection
    outcome: RunOutcome | None = None
    ended: bool = False  # a run-end event was relayed
    started: float = field(default_factory=time.perf_counter)


@dataclass
class ProcessExecutor:
    """An :class:`~seqbench.training.grid.Executor` running up to ``jobs`` runs at once, each in its own process.

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

    def run(self, runs: Sequence[PlannedRun | RunConfig], data_dir: Path, results: Path, mirror: Path | None, update: Progress | None) -> list[RunOutcome]:
        planned = plan_runs(runs, self.device_type)
        if not planned:
            return []
        jobs = self.resolve_jobs([run.config for run in planned])
        if jobs == 1 and self.worker_fn is execute_run:
            return LocalExecutor().run(planned, data_dir, results, mirror, update)
        notify = update or ignore
        ctx = multiprocessing.get_context(self.context)
        if self.context == "forkserver":
            ctx.set_forkserver_preload(PRELOAD)
        todo, running, outcomes = list(planned), [], {}
        try:
            while todo or running:
                while todo and len(running) < jobs:
                    running.append(self._start(ctx, todo.pop(0), data_dir, results, mirror, jobs))
                self._wait(running)
                for job in [job for job in running if self._poll(job, notify)]:
                    running.remove(job)
                    outcomes[id(job.run)] = self._finish(job, notify, "failed")
        except BaseException:
            outcomes.update(self._stop(running, notify))
            raise
        return [outcomes[id(run)] for run in planned]

    def _start(self, ctx: Any, run: PlannedRun, data_dir: Path, results: Path, mirror: Path | None, jobs: int) -> _Job:
        # Duplex: the worker sends events one way and watches the other for the driver's EOF.
        reader, writer = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=worker_main,
            args=(run.with_threads(worker_threads(run.config, jobs, self.cores)), Path(data_dir), Path(results), mirror, writer, self.worker_fn),
            name=f"seqbench:{run.label}",
        )
        process.start()
        writer.close()  # the worker holds the only other end: EOF here = worker gone
        return _Job(run, process, reader)

    @staticmethod
    def _wait(running: list[_Job]) -> None:
        wait([job.conn for job in running] + [job.process.sentinel for job in running], timeout=POLL_SECONDS)

    def _poll(self, job: _Job, notify: Progress) -> bool:
        """Relay what the worker sent; True once it is gone (its pipe at EOF or the process dead)."""
        try:
            while job.conn.poll():
                message = job.conn.recv()
                if message[0] == "outcome":
                    job.outcome = message[1]
                else:
                    kind, info = message[1]
                    job.ended = job.ended or kind == EventKind.RUN_END
                    notify(kind, info)
        except (EOFError, OSError):  # the worker exited (or was killed mid-message)
            job.process.join()
            return True
        except Exception:  # a message cut off by a kill does not unpickle
            job.process.kill()
            job.process.join()
            return True
        return not job.process.is_alive() and not job.conn.poll()

    def _finish(self, job: _Job, notify: Progress, missing: str) -> RunOutcome:
        """The job's outcome; a worker that died without one gets ``missing`` (failed or interrupted)."""
        job.process.join()
        job.conn.close()
        outcome = job.outcome
        if outcome is None:
            code = job.process.exitcode
            why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            reason = "interrupted by the user (Ctrl-C)" if missing == "interrupted" else f"worker process died ({why}); nothing was stored"
            outcome = RunOutcome(job.run.run_id, job.run.label, missing, reason, time.perf_counter() - job.started)
        if not job.ended:
            notify(EventKind.RUN_END, end_info(outcome))
        return outcome

    def _stop(self, running: list[_Job], notify: Progress) -> dict[int, RunOutcome]:
        """Ctrl-C (or any error): stop every worker, let it store its interrupted run, reap it."""
        for job in running:
            if job.process.is_alive():
                os.kill(job.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        try:
            # A second Ctrl-C ends the wait at once; the workers are killed below either way.
            with contextlib.suppress(KeyboardInterrupt):
                while any(job.process.is_alive() for job in running) and time.monotonic() < deadline:
                    self._wait(running)
                    for job in running:
                        self._poll(job, notify)
        finally:
            for job in running:
                if job.process.is_alive():
                    job.process.kill()
        done: dict[int, RunOutcome] = {}
        for job in running:
            self._poll(job, notify)
            done[id(job.run)] = self._finish(job, notify, "interrupted")
        return done
