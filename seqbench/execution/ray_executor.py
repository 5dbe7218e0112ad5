"""Run the pending cells of a comparison grid as Ray tasks, on this machine or on a cluster.

The driver (the ``seqbench compare`` process) stays the only writer of the run store: each task
(:mod:`seqbench.execution.ray_task`) trains one run in memory on a worker
(:func:`seqbench.training.trainer.run_training`) and returns the whole :class:`StoredRun`; the
driver writes it with :meth:`RunStore.write` exactly as a local run is written (same run id, same
atomic directory), so resuming and caching behave identically. Workers never need the driver's
disk: the data sets travel through Ray's object store (:mod:`seqbench.execution.ray_data`).

Ray does the scheduling, the retry of a task whose worker died (``max_retries=1``) and the
cancellation on Ctrl-C; this module only submits, relays progress and writes results.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqbench.devices import device_name
from seqbench.errors import InputError, SeqbenchError
from seqbench.events import EventKind, Progress, ignore
from seqbench.execution.executor import RunOutcome, end_info, test_metrics
from seqbench.execution.planned import PlannedRun, plan_runs
from seqbench.execution.ray_data import DataSource, digest, ensure_prepared, read_files
from seqbench.execution.ray_local import own_local_ray, stop_on_signals
from seqbench.execution.ray_progress import ProgressInbox
from seqbench.execution.ray_task import TaskResult, TrainFn, torch_threads, train_task
from seqbench.plugins import loaded_plugins
from seqbench.storage.layout import ResultsLayout
from seqbench.storage.store import RunStore
from seqbench.training.trainer import run_training

if TYPE_CHECKING:
    from seqbench.config import RunConfig

INSTALL_HINT = "pip install 'seqbench[ray]'"
POLL_SECONDS = 0.2  # how often the driver relays worker progress while it waits for results
TASK_RETRIES = 1  # Ray re-runs a task once when its worker process or node dies
NO_RUN_GPU = "runs get no GPU: pass --gpus-per-run 1 (or use --device cpu)"


def _import_ray() -> Any:
    try:
        import ray  # optional: ray
    except ImportError:
        raise InputError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@dataclass
class RayExecutor:
    """An :class:`~seqbench.execution.executor.Executor` that runs each pending config as a Ray task.

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
            # Plugins travel with each task by name (a file must be at the same path on every node,
            # or be an installed module, as the README says).
            options["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parents[1])], "excludes": ["__pycache__"]}
        if self.address is None:
            own_local_ray()
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
            stop_on_signals()

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
        """The device a run trains on, and so the device in its run id: a GPU iff runs get one."""
        if config.device == "cpu":  # no need to ask the cluster
            return "cpu"
        return device_name(config.device, self.gpus() > 0, NO_RUN_GPU)

    # -- the Executor protocol --
    def run(
        self, runs: Sequence[PlannedRun | RunConfig], data_dir: Path, results: Path, mirror: Path | None, update: Progress | None
    ) -> list[RunOutcome]:
        if not runs:
            return []
        self.connect()
        # Planning asks each run's device: a usage error (cuda without GPUs) stops the grid before any work.
        planned = plan_runs(runs, self.device_type)

        notify = update or ignore
        Path(results).mkdir(parents=True, exist_ok=True)  # lets workers on this file system share its pre-training cache
        inbox = _progress_inbox()
        sources, outcomes = self._stage_data(planned, Path(data_dir), mirror, notify)
        tasks = self._submit([run for run in planned if run.config.dataset in sources], sources, Path(results), inbox)
        outcomes.update(self._collect(tasks, RunStore(results), inbox, notify))
        return [outcomes[id(run)] for run in planned]

    def _stage_data(
        self, runs: list[PlannedRun], data_dir: Path, mirror: Path | None, notify: Progress
    ) -> tuple[dict[str, tuple[DataSource, Any]], dict[int, RunOutcome]]:
        """Put every data set of the grid into the object store once; a missing one fails its runs."""
        ray = _import_ray()
        sources: dict[str, tuple[DataSource, Any]] = {}
        failed: dict[int, RunOutcome] = {}
        for name in dict.fromkeys(run.config.dataset for run in runs):
            try:
                files = read_files(ensure_prepared(name, data_dir, mirror))
            except SeqbenchError as error:
                reason = error.message
            except Exception as error:  # one unreadable data set must not stop the other runs
                reason = f"{type(error).__name__}: {error}"
            else:
                sources[name] = (DataSource(name, str(data_dir.resolve()), digest(files)), ray.put(files))
                continue
            for run in (r for r in runs if r.config.dataset == name):
                failed[id(run)] = self._fail_unsubmitted(run, reason, notify)
        return sources, failed

    def _fail_unsubmitted(self, run: PlannedRun, reason: str, notify: Progress) -> RunOutcome:
        outcome = RunOutcome(run.run_id, run.label, "failed", reason)
        notify(EventKind.RUN_START, {"run_id": outcome.run_id, "label": outcome.label})
        notify(EventKind.RUN_END, end_info(outcome))
        return outcome

    def _submit(self, runs: list[PlannedRun], sources: dict[str, tuple[DataSource, Any]], results: Path, inbox: Any) -> dict[Any, PlannedRun]:
        ray = _import_ray()
        cpus = self.cpus()
        remote = ray.remote(max_retries=TASK_RETRIES)(train_task)
        tasks: dict[Any, PlannedRun] = {}
        for run in runs:
            gpus = self.gpus() if run.device_type == "cuda" else 0
            # A threads=0 run gets the whole CPUs Ray reserves for it; pinned threads stay as they are.
            threaded = run if run.threads > 0 else run.with_threads(torch_threads(cpus))
            ref = remote.options(num_cpus=cpus, num_gpus=gpus, name=f"seqbench:{run.label}").remote(
                threaded, *sources[run.config.dataset], str(ResultsLayout(results.resolve()).pretrain), inbox, self.train_fn or run_training,
                loaded_plugins(),
            )
            tasks[ref] = run
        return tasks

    def _collect(self, tasks: dict[Any, PlannedRun], store: Any, inbox: Any, notify: Progress) -> dict[int, RunOutcome]:
        """Write each run as its task finishes; on Ctrl-C cancel the rest and keep what is written."""
        ray = _import_ray()
        started: set[str] = set()
        ours = {run.run_id for run in tasks.values()}
        outcomes: dict[int, RunOutcome] = {}
        unfinished = list(tasks)
        try:
            while unfinished:
                ready, unfinished = ray.wait(unfinished, num_returns=1, timeout=POLL_SECONDS)
                _relay_events(inbox, ours, started, notify)  # a run's events all precede its result
                for ref in ready:
                    outcomes[id(tasks[ref])] = self._finish(ref, tasks[ref], store, started, notify)
        except BaseException:
            for ref in unfinished:
                ray.cancel(ref)  # queued tasks never start; running ones get a KeyboardInterrupt
            raise
        return outcomes

    def _finish(self, ref: Any, run: PlannedRun, store: Any, started: set[str], notify: Progress) -> RunOutcome:
        ray = _import_ray()
        try:
            result: TaskResult = ray.get(ref)
        except ray.exceptions.RayError as error:  # the worker or its node died, even after the retry
            result = TaskResult(run.run_id, "failed", _ray_failure(ray, error), 0.0, None, "")
        if result.stored is not None:
            store.write(result.stored)  # the same atomic write, under the same run id, as a local run
        metrics = test_metrics(result.stored.row) if result.stored is not None and result.status == "completed" else {}
        outcome = RunOutcome(result.run_id, run.label, result.status, result.reason, result.seconds, metrics)
        if outcome.run_id not in started:
            notify(EventKind.RUN_START, {"run_id": outcome.run_id, "label": outcome.label, "host": result.host})
            started.add(outcome.run_id)
        notify(EventKind.RUN_END, end_info(outcome) | {"host": result.host})
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


def _relay_events(inbox: Any, ours: set[str], started: set[str], notify: Progress) -> None:
    for kind, info in _import_ray().get(inbox.drain.remote()):
        if info["run_id"] not in ours:
            continue  # late events of a run cancelled in an earlier grid of this process
        if kind == EventKind.RUN_START:
            if info["run_id"] in started:
                continue  # the retry of a task whose worker died starts the same run again
            started.add(info["run_id"])
        notify(kind, info)


def _ray_failure(ray: Any, error: BaseException) -> str:
    """One line for the table and the store's reason column, out of Ray's multi-line reports."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail, kind = (lines[0] if lines else ""), type(error).__name__
    died = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError)
    if isinstance(error, died):
        return f"Ray worker died ({kind}, also on its retry): {detail}"[:500]
    return f"{kind}: {detail}"[:500]


def make_ray_executor(address: str | None, cpus_per_run: float | None, gpus_per_run: float | None) -> RayExecutor:
    """The ``--executor ray`` factory: checks that Ray is installed and joins (or starts) it."""
    _import_ray()
    executor = RayExecutor(address, cpus_per_run, gpus_per_run)
    executor.connect()
    return executor
