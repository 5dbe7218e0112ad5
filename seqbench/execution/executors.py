"""The executors by name (``--executor local|ray``): one registry, one factory.

``local`` trains on this machine, ``--jobs`` runs at once, one process each
(:class:`~seqbench.execution.processes.ProcessExecutor`; ``--jobs 1`` in this process);
``ray`` trains each run as a task on a Ray cluster (the ``ray`` extra). Adding an executor is one
factory function here and one line in :data:`EXECUTORS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from seqbench.errors import InputError
from seqbench.execution.executor import Executor
from seqbench.execution.processes import ProcessExecutor
from seqbench.registry import Registry


@dataclass(frozen=True)
class ExecutorChoice:
    """What ``--executor``, ``--jobs``, ``--ray-address``, ``--cpus-per-run`` and ``--gpus-per-run`` say."""

    name: str = "local"
    jobs: int | None = None  # local only: runs at once (None: cores / threads per run)
    ray_address: str | None = None
    cpus_per_run: float | None = None
    gpus_per_run: float | None = None

    def check(self) -> None:
        """Refuse a combination that cannot work, before anything is prepared or trained."""
        EXECUTORS.get(self.name)
        if self.name != "local" and self.jobs is not None:
            raise InputError(f"--jobs is for the local executor: with --executor {self.name} use --cpus-per-run")
        if self.jobs is not None and self.jobs < 1:
            raise InputError(f"--jobs must be >= 1, got {self.jobs}")
        # Checked here, before Ray is imported: a bad value is named whether or not Ray is installed.
        if self.cpus_per_run is not None and self.cpus_per_run <= 0:
            raise InputError(f"--cpus-per-run must be > 0, got {self.cpus_per_run}")
        if self.gpus_per_run is not None and self.gpus_per_run < 0:
            raise InputError(f"--gpus-per-run must be >= 0, got {self.gpus_per_run}")

    @property
    def on_this_machine(self) -> bool:
        """Whether runs share this machine's cores (then ``--jobs`` decides how many at once)."""
        return self.name == "local"


def _local(choice: ExecutorChoice) -> Executor:
    return ProcessExecutor(choice.jobs)


def _ray(choice: ExecutorChoice) -> Executor:
    from seqbench.execution.ray_executor import make_ray_executor  # optional: ray

    return make_ray_executor(choice.ray_address, choice.cpus_per_run, choice.gpus_per_run)


EXECUTORS: Registry[Callable[[ExecutorChoice], Executor]] = Registry("executor", {"local": _local, "ray": _ray})


def make_executor(choice: ExecutorChoice) -> Executor:
    """The executor ``choice`` names, checked (joining or starting Ray for ``ray``)."""
    choice.check()
    return EXECUTORS.get(choice.name)(choice)
