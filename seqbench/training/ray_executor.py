"""Run the pending cells of a comparison grid as Ray tasks, on this machine or on a cluster.

The driver (the ``seqbench compare`` process) stays the only writer of the run store: each task
trains one run in memory on a worker (:func:`seqbench.training.trainer.run_training`) and returns
the whole :class:`StoredRun`; the driver writes it with :meth:`RunStore.write` exactly as a local
run is written (same run id, same atomic directory), so resuming and caching behave identically.

Workers never need the driver's disk. The driver puts each prepared data set's files into Ray's
object store once and passes the reference as a task argument, so Ray moves it to each node at most
once, before the task starts; a task reads the data dir directly when it sees the very same files
there (a shared file system, or a local Ray), and otherwise unpacks the copy into a node-local
cache. Tasks never block in ``ray.get`` while they train: Ray lends a blocked task's CPUs to other
tasks, which would run more trainings at once than a node has CPUs.

Ray does the scheduling, the retry of a task whose worker died (``max_retries=1``) and the
cancellation on Ctrl-C; this module only submits, relays progress and writes results.
"""

from __future__ import annotations

import contextlib

import hashlib
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqbench.errors import InputError, SeqbenchError
from seqbench.training.grid import RunOutcome, Update, run_label
from seqbench.training.ray_progress import ProgressInbox

if TYPE_CHECKING:
    import torch

    from seqbench.data.sequences import PreparedDataset
    from seqbench.storage.store import StoredRun
    from seqbench.training.config import RunConfig

INSTALL_HINT = "pip install 'seqbench[ray]'"
POLL_SECONDS = 0.2  # how often the driver relays worker progress while it waits for results
BATCH_EVENT_SECONDS = 0.5  # workers forward at most two "batch" events a second per run
TASK_RETRIES = 1  # Ray re-runs a task once when its worker process or node dies

# (config, dataset, device, pretrain_cache, progress) -> (stored run, error or None)
TrainFn = Callable[..., "tuple[StoredRun, BaseException | None]"]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def torch_threads(cpus_per_run: float) -> int:
    """Intra-op threads of a run whose config leaves ``threads`` at 0: its whole CPUs, at least one.

    More threads than the CPUs Ray reserved would oversubscribe the node (Ray itself sets
    ``OMP_NUM_THREADS`` the same way). A config's ``threads > 0`` wins (the trainer pins it), and
    is what makes results equal across executors: the thread count sets the reduction order.
    """
    return max(1, math.floor(cpus_per_run))


# --- the data set as shipped to workers -------------------------------------------------------
@dataclass(frozen=True)
class DataSource:
    """Which prepared data set a task trains on; its files travel as a separate task argument."""

    name: str
    data_dir: str  # the driver's data dir, used when the worker sees the same files there
    digest: str  # sha256 over every file of the prepared directory (names and bytes)


def _read_files(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def _digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def _ensure_prepared(name: str, data_dir: Path, mirror: Path | None) -> Path:
    from seqbench.data.sequences import is_prepared

    if not is_prepared(name, data_dir):
        # Preparing (or generating the synthetic set) happens once, on the driver.
        from seqbench.data.prepare import ensure_prepared

        ensure_prepared(name, data_dir, mirror)
    return Path(data_dir) / name


# Per worker process: a data set is parsed once however many runs of it the worker trains.
_LOADED: dict[str, PreparedDataset] = {}


def _load_on_worker(source: DataSource, files: dict[str, bytes]) -> PreparedDataset:
    from seqbench.atomic import atomic_directory
    from seqbench.data.sequences import load_prepared

    if source.digest in _LOADED:
        return _LOADED[source.digest]
    shared = Path(source.data_dir) / source.name
    if shared.is_dir() and _digest(_read_files(shared)) == source.digest:
        dataset = load_prepared(source.name, Path(source.data_dir))
    else:
        cache = Path(tempfile.gettempdir()) / "seqbench-ray-data" / source.digest[:16]
        if not (cache / source.name / "meta.json").is_file():
            # Another worker on this node may unpack the same files first: then theirs are used.
            with contextlib.suppress(FileExistsError), atomic_directory(cache / source.name) as tmp:
                for relative, content in files.items():
                    (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / relative).write_bytes(content)
        dataset = load_prepared(source.name, cache)
    _LOADED[source.digest] = dataset
    return dataset


# --- the task ---------------------------------------------------------------------------------
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
        self.last_batch = 0.0
        self.last_push: Any = None

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if event == "batch":
            if now - self.last_batch < BATCH_EVENT_SECONDS:
                return  # every step would flood the driver; the table needs a few per second
            self.last_batch = now
        self.last_push = self.inbox.push.remote(event, info | {"run_id": self.run_id, "label": self.label})

    def flush(self) -> None:
        import ray

        if self.last_push is not None:
            ray.get(self.last_push)


def _failure_reason(stored: StoredRun, error: BaseException | None) -> str:
    """The same reason text the local executor reports (via ``raise_for_outcome``)."""
    from seqbench.training.trainer import raise_for_outcome

    try:
        raise_for_outcome(stored, error)
    except SeqbenchError as failure:
        return failure.message
    except Exception as bug:
        return f"{type(bug).__name__}: {bug}"
    return ""


def train_task(
    config: RunConfig,
    source: DataSource,
    files: dict[str, bytes],
    device_type: str,
    threads: int,
    pretrain_cache: str,
    inbox: Any,
    train_fn: TrainFn,
) -> TaskResult:
    """One grid cell on a Ray worker: load the data, train in memory, return the run.

    ``files`` is the data set's object-store copy, which Ray resolved before the task started.
    """
    import torch

    torch.set_num_threads(threads)
    device = torch.device(device_type)
    run_id, label, host = config.run_id(device.type), run_label(config), socket.gethostname()
    relay = _Relay(inbox, run_id, label)
    relay("run-start", {"host": host})
    started = time.perf_counter()
    try:
        dataset = _load_on_worker(source, files)
        stored, error = train_fn(config, dataset, device, _pretrain_dir(pretrain_cache), relay)
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


# --- the executor -----------------------------------------------------------------------------
@dataclass
class _Submitted:
    config: RunConfig
    run_id: str
    label: str


@dataclass
class RayExecutor:
    """An :class:`~seqbench.training.grid.Executor` that runs each pending config as a Ray task.

    ``address``: ``None`` starts a local Ray on this machine (unless this process already joined
    one), ``auto`` or ``ray://host:port`` joins a cluster. ``gpus_per_run`` defaults to 1 when
    the cluster has GPUs, else 0; ``cpus_per_run`` defaults to 1 and also sets torch's threads.
    ``train_fn`` is what a worker runs (``run_training``); tests swap in failing functions.
    """

    address: str | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float | None = None
    train_fn: TrainFn | None = None
    started_ray: bool = field(default=False, init=False)
    _cluster_gpus: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.cpus_per_run is not None and self.cpus_per_run <= 0:
            raise InputError(f"--cpus-per-run must be > 0, got {self.cpus_per_run}")
        if self.gpus_per_run is not None and self.gpus_per_run < 0:
            raise InputError(f"--gpus-per-run must be >= 0, got {self.gpus_per_run}")

    # -- connection and resources --
    def connect(self) -> None:
        """Join (or start) Ray once; a wrong address is an input error, not a traceback."""
        ray = _import_ray()
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if self.address is None:
            options["include_dashboard"] = False  # the extra installs Ray core only
        else:
            # Ship the driver's own seqbench to the cluster, so that every worker runs the same
            # code whether or not (and whichever version) seqbench is installed on its node.
            options["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parents[1])], "excludes": ["__pycache__"]}
        if self.address is None:
            _own_local_ray()
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, ValueError, RuntimeError) as error:
            where = self.address or "this machine"
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            # Ray's own message already names the fix when a package is missing (ray[client]).
            hint = "" if "pip install" in first else "; is a Ray head running there? (`ray start --head`)"
            raise InputError(f"cannot start or join Ray at {where}: {first}{hint}") from None
        self.started_ray = self.address is None
        if self.started_ray:
            _stop_on_signals()

    def close(self) -> None:
        """Stop the local Ray this executor started (a joined cluster keeps running)."""
        if self.started_ray:
            _import_ray().shutdown()
            self.started_ray = False

    def gpus(self) -> float:
        if self.gpus_per_run is not None:
            return self.gpus_per_run
        if self._cluster_gpus is None:
            self._cluster_gpus = float(_import_ray().cluster_resources().get("GPU", 0))
        return 1.0 if self._cluster_gpus > 0 else 0.0

    def cpus(self) -> float:
        return 1.0 if self.cpus_per_run is None else self.cpus_per_run

    def device_type(self, config: RunConfig) -> str:
        """The device a run trains on, and so the device in its run id: a GPU iff one is asked for."""
        if config.device == "cpu":
            return "cpu"
        if config.device == "cuda" and self.gpus() <= 0:
            raise InputError("device 'cuda' was asked for but runs get no GPU: pass --gpus-per-run 1 (or use --device cpu)")
        return "cuda" if self.gpus() > 0 else "cpu"

    # -- the Executor protocol --
    def run(self, configs: list[RunConfig], data_dir: Path, results: Path, mirror: Path | None, update: Update | None) -> list[RunOutcome]:
        if not configs:
            return []
        self.connect()
        for config in configs:
            self.device_type(config)  # a usage error (cuda without GPUs) stops the grid before any work
        from seqbench.storage.store import RunStore

        notify = update or (lambda event, info: None)
        Path(results).mkdir(parents=True, exist_ok=True)  # lets workers on this file system share its pre-training cache
        inbox = _progress_inbox()
        sources, outcomes = self._stage_data(configs, Path(data_dir), mirror, notify)
        tasks = self._submit([c for c in configs if c.dataset in sources], sources, Path(results), inbox)
        outcomes.update(self._collect(tasks, RunStore(results), inbox, notify))
        return [outcomes[key] for key in (id(config) for config in configs)]

    def _stage_data(
        self, configs: list[RunConfig], data_dir: Path, mirror: Path | None, notify: Update
    ) -> tuple[dict[str, tuple[DataSource, Any]], dict[int, RunOutcome]]:
        """Put every data set of the grid into the object store once; a missing one fails its runs."""
        ray = _import_ray()
        sources: dict[str, tuple[DataSource, Any]] = {}
        failed: dict[int, RunOutcome] = {}
        for name in dict.fromkeys(config.dataset for config in configs):
            try:
                files = _read_files(_ensure_prepared(name, data_dir, mirror))
            except SeqbenchError as error:
                reason = error.message
            except Exception as error:  # one unreadable data set must not stop the other runs
                reason = f"{type(error).__name__}: {error}"
            else:
                sources[name] = (DataSource(name, str(data_dir.resolve()), _digest(files)), ray.put(files))
                continue
            for config in (c for c in configs if c.dataset == name):
                failed[id(config)] = self._fail_unsubmitted(config, reason, notify)
        return sources, failed

    def _fail_unsubmitted(self, config: RunConfig, reason: str, notify: Update) -> RunOutcome:
        outcome = RunOutcome(config.run_id(self.device_type(config)), run_label(config), "failed", reason)
        info = {"run_id": outcome.run_id, "label": outcome.label}
        notify("run-start", info)
        notify("run-end", info | {"status": "failed", "reason": reason, "metrics": {}})
        return outcome

    def _submit(self, configs: list[RunConfig], sources: dict[str, tuple[DataSource, Any]], results: Path, inbox: Any) -> dict[Any, _Submitted]:
        from seqbench.training.trainer import run_training

        ray = _import_ray()
        cpus = self.cpus()
        remote = ray.remote(max_retries=TASK_RETRIES)(train_task)
        tasks: dict[Any, _Submitted] = {}
        for config in configs:
            device_type = self.device_type(config)
            gpus = self.gpus() if device_type == "cuda" else 0
            ref = remote.options(num_cpus=cpus, num_gpus=gpus, name=f"seqbench:{run_label(config)}").remote(
                config, *sources[config.dataset], device_type, torch_threads(cpus), str(results.resolve() / "pretrain"),
                inbox, self.train_fn or run_training,
            )
            tasks[ref] = _Submitted(config, config.run_id(device_type), run_label(config))
        return tasks

    def _collect(self, tasks: dict[Any, _Submitted], store: Any, inbox: Any, notify: Update) -> dict[int, RunOutcome]:
        """Write each run as its task finishes; on Ctrl-C cancel the rest and keep what is written."""
        ray = _import_ray()
        started: set[str] = set()
        ours = {submitted.run_id for submitted in tasks.values()}
        outcomes: dict[int, RunOutcome] = {}
        unfinished = list(tasks)
        try:
            while unfinished:
                ready, unfinished = ray.wait(unfinished, num_returns=1, timeout=POLL_SECONDS)
                _relay_events(inbox, ours, started, notify)  # a run's events all precede its result
                for ref in ready:
                    submitted = tasks[ref]
                    outcomes[id(submitted.config)] = self._finish(ref, submitted, store, started, notify)
        except BaseException:
            for ref in unfinished:
                ray.cancel(ref)  # queued tasks never start; running ones get a KeyboardInterrupt
            raise
        return outcomes

    def _finish(self, ref: Any, submitted: _Submitted, store: Any, started: set[str], notify: Update) -> RunOutcome:
        ray = _import_ray()
        try:
            result: TaskResult = ray.get(ref)
        except ray.exceptions.RayError as error:  # the worker or its node died, even after the retry
            result = TaskResult(submitted.run_id, "failed", _ray_failure(ray, error), 0.0, None, "")
        if result.stored is not None:
            store.write(result.stored)  # the same atomic write, under the same run id, as a local run
        metrics = {}
        if result.stored is not None and result.status == "completed":
            metrics = {k.removeprefix("test_"): v for k, v in result.stored.row.items() if k.startswith("test_")}
        outcome = RunOutcome(result.run_id, submitted.label, result.status, result.reason, result.seconds, metrics)
        info = {"run_id": outcome.run_id, "label": outcome.label}
        if outcome.run_id not in started:
            notify("run-start", info | {"host": result.host})
            started.add(outcome.run_id)
        notify("run-end", info | {"status": outcome.status, "reason": outcome.reason, "metrics": metrics, "host": result.host})
        return outcome


# One inbox per Ray job, kept (and so kept alive) for later grids of this process: an actor is a
# process of its own, not worth starting per grid.
_INBOXES: dict[str, Any] = {}


def _progress_inbox() -> Any:
    ray = _import_ray()
    job = ray.get_runtime_context().get_job_id()
    if job not in _INBOXES:
        _INBOXES[job] = ray.remote(num_cpus=0)(ProgressInbox).remote()
    return _INBOXES[job]


def _relay_events(inbox: Any, ours: set[str], started: set[str], notify: Update) -> None:
    for event, info in _import_ray().get(inbox.drain.remote()):
        if info["run_id"] not in ours:
            continue  # late events of a run cancelled in an earlier grid of this process
        if event == "run-start":
            if info["run_id"] in started:
                continue  # the retry of a task whose worker died starts the same run again
            started.add(info["run_id"])
        notify(event, info)


def _ray_failure(ray: Any, error: BaseException) -> str:
    """One line for the table and the store's reason column, out of Ray's multi-line reports."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail, kind = (lines[0] if lines else ""), type(error).__name__
    died = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError)
    if isinstance(error, died):
        return f"Ray worker died ({kind}, also on its retry): {detail}"[:500]
    return f"{kind}: {detail}"[:500]


# --- a local Ray never outlives seqbench ---------------------------------------------------------
def _own_local_ray() -> None:
    """Mark the processes of the local Ray about to start, and watch for this process's end.

    Ray's own atexit hook shuts it down on a normal exit; the signal handlers below cover
    SIGTERM/SIGHUP; the watcher (:mod:`seqbench.training.ray_reaper`) covers SIGKILL.
    """
    import secrets
    import subprocess
    import sys

    from seqbench.training.ray_reaper import OWNER_VARIABLE

    value = f"{os.getpid()}-{secrets.token_hex(6)}"
    os.environ[OWNER_VARIABLE] = value  # inherited by every process ray.init starts
    if not Path("/proc").is_dir():
        return
    environment = {key: val for key, val in os.environ.items() if key != OWNER_VARIABLE}
    subprocess.Popen(
        [sys.executable, "-m", "seqbench.training.ray_reaper", str(os.getpid()), value],
        env=environment | {"PYTHONPATH": os.pathsep.join(sys.path)}, start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
    )


def _stop_on_signals() -> None:
    """SIGHUP (a closed terminal) ends the driver as Ctrl-C does: tasks cancelled, written runs
    kept, Ray shut down by its exit hook; the default action would skip every exit hook. Ray's
    ``init`` installs its own SIGTERM handler, which exits through the same hooks; it is kept."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(number: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {number}")

    for number in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(number) in (signal.SIG_DFL, None):
            signal.signal(number, interrupt)


def make_ray_executor(address: str | None, cpus_per_run: float | None, gpus_per_run: float | None) -> RayExecutor:
    """The ``--executor ray`` factory: checks that Ray is installed and joins (or starts) it."""
    _import_ray()
    executor = RayExecutor(address, cpus_per_run, gpus_per_run)
    executor.connect()
    return executor
