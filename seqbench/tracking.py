"""Optional experiment tracking: mirror runs into MLflow (``--log-to mlflow``).

The Parquet run store stays the source of truth; a tracker only receives copies: the config as
parameters, each evaluated epoch's metrics (step = epoch) and, when the run ends, its final
metrics, its status as a tag and the whole run record (``seqbench_run.json``, the shape of
:func:`seqbench.storage.records.run_record`).

MLflow is an extra (``pip install 'seqbench[mlflow]'``). Where it logs is MLflow's own setting
``MLFLOW_TRACKING_URI``; without it, MLflow's local file store under ``<results>/mlruns``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from seqbench.errors import InputError, unknown_name
from seqbench.events import EventKind, Progress
from seqbench.storage.layout import ResultsLayout
from seqbench.storage.records import run_record
from seqbench.storage.store import RunStore

TRACKERS = ("mlflow",)


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"loss_params.num_negatives": "64", ...}`` (MLflow params are strings)."""
    params: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            params |= flat_params(value, f"{prefix}{key}.")
        else:
            params[f"{prefix}{key}"] = str(value)
    return params


def _finite(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def metric_name(name: str) -> str:
    # MLflow metric names allow letters, digits, _ - . / and spaces; "@" is not among them.
    return name.replace("@", "_at_")


class MlflowTracker:
    """A progress callback that mirrors one or more seqbench runs into MLflow."""

    def __init__(self, results: Path, forward: Progress | None = None) -> None:
        try:
            import mlflow  # optional: mlflow
        except ImportError:
            raise InputError("--log-to mlflow needs MLflow: pip install 'seqbench[mlflow]'") from None
        self.mlflow = mlflow
        self.results = Path(results)
        self.forward = forward
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = ResultsLayout(self.results).mlruns.resolve().as_uri()
            # MLflow 3 refuses its file backend unless asked for it; a local file store needs no
            # server and no database, which is the point of this default.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name("seqbench")
        self.experiment_id = experiment.experiment_id if experiment else self.client.create_experiment("seqbench")
        self.active: dict[str, str] = {}  # seqbench run id -> MLflow run id
        self.planned: dict[str, dict[str, Any]] = {}  # a grid's run id -> config, started on "run-start"

    def __call__(self, event: EventKind, info: dict[str, Any]) -> None:
        # A grid's events name their run; a single `train` has one active run.
        run_id = info.get("run_id") or (next(iter(self.active)) if len(self.active) == 1 else None)
        if event == EventKind.RUN_START and run_id in self.planned:
            self.start(run_id, self.planned[run_id])
        elif event == EventKind.RUN_END and run_id is not None:
            self.end_stored(run_id)
        elif event == EventKind.EPOCH and run_id in self.active:
            metrics = {metric_name(k): v for k, v in _finite(info).items() if k not in ("epoch", "best_epoch")}
            for name, value in metrics.items():
                self.client.log_metric(self.active[run_id], name, value, step=int(info["epoch"]))
        if self.forward is not None:
            self.forward(event, info)

    def start(self, run_id: str, config: dict[str, Any]) -> None:
        run = self.client.create_run(self.experiment_id, run_name=run_id, tags={"seqbench.run_id": run_id})
        self.active[run_id] = run.info.run_id
        for name, value in flat_params(config).items():
            self.client.log_param(run.info.run_id, name, value[:6000])

    def end(self, record: dict[str, Any]) -> None:
        """Log the final record of a stored run and close its MLflow run."""
        mlflow_id = self.active.pop(record["run_id"], None)
        if mlflow_id is None:
            return
        for split, metrics in record["metrics"].items():
            for name, value in _finite(metrics).items():
                self.client.log_metric(mlflow_id, metric_name(f"final_{split}_{name}"), value)
        self.client.set_tag(mlflow_id, "seqbench.status", str(record["status"]))
        self.client.log_dict(mlflow_id, record, "seqbench_run.json")
        self.client.set_terminated(mlflow_id, "FINISHED" if record["status"] == "completed" else "FAILED")

    def end_stored(self, run_id: str) -> None:
        """Close ``run_id``'s MLflow run with the record the store holds (or as failed if none)."""
        store = RunStore(self.results)
        if store.has(run_id):
            self.end(run_record(store.row(run_id)))
        elif run_id in self.active:
            self.client.set_terminated(self.active.pop(run_id), "FAILED")


def make_tracker(name: str | None, results: Path, forward: Progress | None) -> MlflowTracker | None:
    if name is None:
        return None
    if name not in TRACKERS:
        raise InputError(unknown_name("--log-to tracker", name, TRACKERS))
    return MlflowTracker(results, forward)


__all__ = ["TRACKERS", "MlflowTracker", "flat_params", "make_tracker", "metric_name"]
