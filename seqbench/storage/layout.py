"""What lives where under a results directory: the one place that names its folders.

``runs/`` (the run store), ``studies/`` (tuning studies), ``pretrain/`` (the S3-Rec pre-training
cache), ``mlruns/`` (the MLflow mirror, when no tracking URI is set) and ``running/`` (the live
log of every run in progress, removed when the run is stored), ``resume/`` (the last resume point
of a run in progress or interrupted) and ``locks/`` (one lock file per
run id, :mod:`seqbench.storage.locks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ResultsLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def studies(self) -> Path:
        return self.root / "studies"

    @property
    def pretrain(self) -> Path:
        return self.root / "pretrain"

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"

    @property
    def running(self) -> Path:
        return self.root / "running"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def resume(self) -> Path:
        return self.root / "resume"

    def resume_point(self, run_id: str) -> Path:
        """Where a run in progress saves its state at each evaluation (:mod:`seqbench.training.resume`)."""
        return self.resume / f"{run_id}.pt"

    def live_log(self, run_id: str) -> Path:
        return self.running / f"{run_id}.log"

    def lock(self, name: str) -> Path:
        """The lock file of one run id (or study id, or pre-training cache key)."""
        return self.locks / f"{name}.lock"
