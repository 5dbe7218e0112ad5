"""Child processes that each run one task for a driver, report through a pipe and never outlive it.

Both ways of running work side by side on this machine use it: a grid's runs (``compare --jobs``,
:mod:`seqbench.execution.processes`) and tuning studies (``compare --tune --jobs``,
:mod:`seqbench.tuning.study_pool`). A task is a module-level function ``target(*args, relay)``;
``relay(kind, info)`` sends progress events to the driver ("batch" ones throttled).

Stopping. Workers ignore the terminal's SIGINT (the driver decides): the driver's :func:`stop` sends
each one SIGUSR1 when the driver was stopped by Ctrl-C and SIGTERM otherwise, which the worker
turns into a KeyboardInterrupt or a :class:`Terminated`, so the trainer stores its run as
``interrupted`` with the true cause (as it does for a run in the driver's own process), then kills those still
alive after the grace time. A worker also watches its end of the pipe, which the driver never
writes to: end of file means the driver is gone (killed, even by SIGKILL), and the worker exits at
once, so no worker outlives its driver. (Not the parent pid: a fork server is a worker's parent
and outlives a killed driver.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from seqbench.errors import Terminated
from seqbench.events import BatchThrottle, EventKind, Progress, ProgressEvent
from seqbench.plugins import load_all as load_plugins

POLL_SECONDS = 0.2  # how often the driver looks at its workers when none reports
STOP_GRACE_SECONDS = 60.0  # time a stopped worker has to store its interrupted run

Notify = Progress  # what the driver hands a worker's events to


@dataclass
class Worker:
    """The driver's handle on one child process and what it sent back."""

    name: str
    process: Any
    conn: Connection
    result: Any = None
    error: BaseException | None = None
    interrupted: bool = False  # the task ended with a KeyboardInterrupt (a stop request)
    answered: bool = False  # a result, an error or an interruption arrived
    closed: bool = False  # the worker's end of the pipe is closed: nothing more will arrive
    started: float = field(default_factory=time.perf_counter)

    def why_gone(self) -> str:
        code = self.process.exitcode
        return f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"


def start(context: Any, target: Callable[..., Any], args: tuple[Any, ...], name: str, threads: int = 0) -> Worker:
    """Start ``target(*args, relay)`` in a child of ``context`` (torch on ``threads`` threads if > 0)."""
    # Duplex: the worker sends one way and watches the other for the driver's end of file.
    reader, writer = context.Pipe(duplex=True)
    process = context.Process(target=_main, args=(writer, target, args, threads), name=name)
    with drivers_code_first():
        process.start()
    writer.close()  # the worker holds the only other end: end of file here = worker gone
    return Worker(name, process, reader)


@contextlib.contextmanager
def drivers_code_first() -> Iterator[None]:
    """Make a child interpreter started in this block import the driver's seqbench.

    The fork server is a fresh ``python -c``, whose ``sys.path`` starts with the current directory
    (Python 3.11 ignores the driver's path it is handed): run from a folder holding another
    checkout, workers trained that checkout's code. ``PYTHONSAFEPATH`` drops the current directory;
    ``PYTHONPATH`` puts the folder the driver's seqbench came from first.
    """
    import seqbench  # lazy: the package's own location, read when a child starts

    home = str(Path(seqbench.__file__).resolve().parents[1])
    saved = {key: os.environ.get(key) for key in ("PYTHONSAFEPATH", "PYTHONPATH")}
    os.environ["PYTHONSAFEPATH"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [home, saved["PYTHONPATH"]]))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver the first one that came.

    Start and register a worker inside one: a stop request handled between the two would stop
    the registered workers only, and the unregistered one (whose pipe the driver still holds)
    would keep the exiting driver waiting for it forever. The handlers are swapped, not the
    signal mask: Python runs its handlers in the main thread whichever thread the kernel
    delivered the signal to, so masking the main thread alone defers nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: held.append(signum)) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if held:
            signal.raise_signal(held[0])  # now handled as it would have been


def wait_any(workers: Sequence[Worker], timeout: float = POLL_SECONDS) -> None:
    """Block until a worker sends something or exits (or ``timeout`` passes)."""
    wait([w.conn for w in workers if not w.closed] + [w.process.sentinel for w in workers], timeout=timeout)


def poll(worker: Worker, notify: Notify) -> bool:
    """Hand the worker's events to ``notify``, keep its answer; True once it is gone.

    Never blocks: a worker whose pipe is closed but whose process has not exited yet is "not
    gone" until its process sentinel says so (a stop kills it after the grace time).
    """
    if not worker.closed:
        try:
            while worker.conn.poll():
                kind, payload = worker.conn.recv()
                _receive(worker, kind, payload, notify)
        except (EOFError, OSError):  # the worker closed its end, exited or was killed mid-message
            worker.closed = True
        except Exception:  # a message cut off by a kill does not unpickle
            worker.closed = True
            worker.process.kill()
    return not worker.process.is_alive() and (worker.closed or not worker.conn.poll())


def _receive(worker: Worker, kind: str, payload: Any, notify: Notify) -> None:
    if kind == "event":
        notify(*payload)
        return
    worker.answered = True
    if kind == "result":
        worker.result = payload
    elif kind == "error":
        worker.error = payload
    else:
        worker.interrupted = True


def reap(worker: Worker) -> None:
    worker.process.join()
    worker.conn.close()


def stop(workers: Sequence[Worker], notifies: Sequence[Notify], grace: float = STOP_GRACE_SECONDS,
         cause: BaseException | None = None) -> None:
    """Ask every live worker to stop, relay what they send (worker i's events to ``notifies[i]``)
    for up to ``grace`` seconds, kill the rest, reap them all. A Ctrl-C during the wait ends it at
    once. ``cause`` is what stopped the driver: a Ctrl-C is passed on as one (SIGUSR1), anything
    else (SIGTERM, an error) as SIGTERM, so each interrupted run says why it stopped."""
    number = signal.SIGUSR1 if isinstance(cause, KeyboardInterrupt) and not isinstance(cause, Terminated) else signal.SIGTERM
    for worker in workers:
        if worker.process.is_alive():
            os.kill(worker.process.pid, number)
    deadline = time.monotonic() + grace
    try:
        with contextlib.suppress(KeyboardInterrupt):
            while any(w.process.is_alive() for w in workers) and time.monotonic() < deadline:
                wait_any(workers)
                for worker, notify in zip(workers, notifies):
                    poll(worker, notify)
    finally:
        for worker in workers:
            if worker.process.is_alive():
                worker.process.kill()
    for worker, notify in zip(workers, notifies):
        poll(worker, notify)
        reap(worker)


# --- inside the child ---------------------------------------------------------------------------
class _Relay:
    """The task's progress callback: events down the pipe, "batch" ones throttled."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.throttle = conn, BatchThrottle()

    def __call__(self, kind: EventKind, info: dict[str, Any]) -> None:
        if self.throttle.passes(kind):
            self.conn.send(("event", ProgressEvent(kind, info)))


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    _ignore_stop_requests()  # one stop request; the interrupted run gets stored
    raise Terminated


def _stop_on_driver_interrupt(signum: int, frame: Any) -> None:
    _ignore_stop_requests()
    raise KeyboardInterrupt  # the driver's Ctrl-C, passed on


def _ignore_stop_requests() -> None:
    for number in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(number, signal.SIG_IGN)


def _exit_with_driver(conn: Connection) -> None:
    """Block on the pipe, which the driver never writes to: end of file means the driver is gone."""
    with contextlib.suppress(EOFError, OSError):
        conn.recv()
    os._exit(1)  # nobody would read this task's answer


def _main(conn: Connection, target: Callable[..., Any], args: tuple[Any, ...], threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGUSR1, _stop_on_driver_interrupt)
    threading.Thread(target=_exit_with_driver, args=(conn,), daemon=True).start()
    if threads > 0:

        torch.set_num_threads(threads)
    try:
        load_plugins()  # the driver's plugins, named in the SEQBENCH_PLUGINS it passed down
        conn.send(("result", target(*args, _Relay(conn))))
    except KeyboardInterrupt:  # the trainer stored its run as interrupted before this
        conn.send(("interrupted", None))
    except Exception as error:  # raised again in the driver
        try:
            conn.send(("error", error))
        except Exception:  # an exception that does not pickle travels as its text
            conn.send(("error", RuntimeError(f"{type(error).__name__}: {error}")))
    conn.close()
