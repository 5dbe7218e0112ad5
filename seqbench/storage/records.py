"""The one JSON shape of a run, shared by every command's ``--json`` (documented in the README).

A stored run is one flat Parquet row (``run.parquet``); :func:`run_record` turns such a row into
the nested record that ``train``, ``eval``, ``runs`` and ``compare`` print. Every top-level JSON
document carries ``kind`` and ``schema_version`` (:func:`document`), so a reader can tell what it
got and whether it knows the layout. Numbers stay raw (bytes, seconds); NaN becomes ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from seqbench.config import LATER_FIELDS
from seqbench.measure.metrics import is_metric

SCHEMA_VERSION = 1
# Row columns that make up the nested groups of a record (everything else is in ``config``).
TRAINING = ("best_epoch", "epochs_run", "train_seconds", "peak_memory_bytes", "device", "num_params", "num_items")
PROTOCOL = ("split", "exclude_seen", "positions", "augment", "negatives", "ce_impl", "selection_metric", "paper_preset")
SOFTWARE = {"seqbench": "seqbench_version", "torch": "torch_version", "python": "python_version"}
IDENTITY = ("run_id", "status", "reason", "dataset", "model", "loss", "seed", "created_at", "notes")


def plain(value: Any) -> Any:
    """A JSON-ready scalar: numpy scalars as Python ones, NaN/NA as None."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        if value is not None and not isinstance(value, (list, dict, tuple)) and pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def json_object(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def run_config(row: Mapping[str, Any]) -> dict[str, Any]:
    """The run's config as a nested object (``loss_params``/``model_params`` as objects)."""
    config = json_object(row.get("config_json"))

    # Fields added after the first runs were stored (and any at their default) are not in config_json.
    for name, default in LATER_FIELDS.items():
        stored = plain(row.get(name))
        config.setdefault(name, default if stored is None else stored)
    return config


def split_metrics(row: Mapping[str, Any], split: str) -> dict[str, float]:
    """The ``<split>_METRIC`` columns of a run row (any registered metric), without the prefix."""
    prefix = f"{split}_"
    metrics = {}
    for key, value in row.items():
        name = key[len(prefix):] if key.startswith(prefix) else ""
        if name and is_metric(name) and plain(value) is not None:
            metrics[name] = plain(value)
    return metrics


def run_record(row: Mapping[str, Any], epochs: pd.DataFrame | None = None) -> dict[str, Any]:
    """One stored run (a row of ``RunStore.table()`` or ``StoredRun.row``) as the documented record."""
    record: dict[str, Any] = {"kind": "run", "schema_version": SCHEMA_VERSION}
    record |= {key: plain(row.get(key)) for key in IDENTITY}
    record["config"] = run_config(row)
    record["metrics"] = {split: split_metrics(row, split) for split in ("valid", "test")}
    record["training"] = {key: plain(row.get(key)) for key in TRAINING}
    record["protocol"] = {key: plain(row.get(key)) for key in PROTOCOL}
    record["software"] = {name: plain(row.get(column)) for name, column in SOFTWARE.items()}
    # Where the loss's and model's code came from (built-in, or a plugin's file, digest, version).
    record["code"] = {"loss": plain(row.get("loss_code")) or "built-in", "model": plain(row.get("model_code")) or "built-in"}
    if epochs is not None:
        record["epochs"] = frame_rows(epochs)
    return record


def frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows of a DataFrame."""
    return [{key: plain(value) for key, value in row.items()} for row in frame.to_dict(orient="records")]


def run_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [run_record(row) for row in table.to_dict(orient="records")] if not table.empty else []


def document(kind: str, **fields: Any) -> dict[str, Any]:
    """A top-level ``--json`` document: ``{"kind": ..., "schema_version": ..., **fields}``."""
    return {"kind": kind, "schema_version": SCHEMA_VERSION, **fields}


__all__ = ["SCHEMA_VERSION", "document", "frame_rows", "plain", "run_config", "run_record", "run_records", "split_metrics"]
