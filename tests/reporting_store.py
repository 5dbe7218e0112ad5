"""Build run stores with known metrics for the reporting tests (no training involved)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from seqbench.measure.metrics import metrics_from_ranks
from seqbench.reporting.runs import METRICS
from seqbench.storage.store import RunStore, StoredRun

ALL_METRICS = (*METRICS, "MRR")


def run_row(run_id: str, dataset: str, model: str, loss: str, seed: int, metrics: dict[str, float],
            status: str = "completed", memory: int = 100 * 2**20, ce_impl: str = "",
            loss_params: dict | None = None, train_seconds: float = 10.0) -> dict:
    row = {
        "run_id": run_id, "status": status, "reason": "" if status == "completed" else "boom",
        "dataset": dataset, "model": model, "loss": loss, "seed": seed, "split": "leave-one-out",
        "exclude_seen": True, "positions": "all", "augment": False, "negatives": 1, "ce_impl": ce_impl,
        "device": "cpu", "epochs_run": 3, "best_epoch": 3, "train_seconds": train_seconds,
        "peak_memory_bytes": int(memory), "num_items": 100, "num_params": 1000, "lr": 1e-3,
        "batch_size": 32, "max_len": 10, "config_json": "{}", "created_at": f"2026-01-01T00:00:{seed:02d}",
        "loss_params_json": json.dumps(loss_params or {}, sort_keys=True), "model_params_json": "{}",
    }
    for name in ALL_METRICS:
        row[f"test_{name}"] = float(metrics.get(name, np.nan))
        row[f"valid_{name}"] = float(metrics.get(name, np.nan)) * 0.9
    return row


def curve(final: float, seconds: float, points: int = 4, test: bool = True) -> pd.DataFrame:
    """A rising NDCG@10 curve ending at ``final`` after ``seconds`` of training."""
    fraction = np.linspace(0.4, 1.0, points)
    return pd.DataFrame({
        "epoch": np.arange(1, points + 1), "train_loss": 5.0 - fraction,
        "train_seconds": seconds * np.arange(1, points + 1) / points, "peak_memory_bytes": 2**20,
        "test_NDCG@10": final * fraction if test else np.nan, "valid_NDCG@10": 0.9 * final * fraction,
    })


def write(store: RunStore, row: dict, ranks: np.ndarray | None = None, epochs: pd.DataFrame | None = None) -> None:
    frame = pd.DataFrame(columns=["split", "user", "rank"])
    if ranks is not None:
        frame = pd.DataFrame({"split": "test", "user": np.arange(len(ranks), dtype=np.int64), "rank": ranks.astype(np.int64)})
    store.write(StoredRun(row["run_id"], row, epochs if epochs is not None else curve(row["test_NDCG@10"], row["train_seconds"]), frame))


def ranks_run(store: RunStore, run_id: str, dataset: str, model: str, loss: str, ranks: np.ndarray, seed: int = 0,
              **extra) -> dict:
    """A run whose stored metrics are exactly those of its per-user ranks."""
    row = run_row(run_id, dataset, model, loss, seed, metrics_from_ranks(ranks), **extra)
    write(store, row, ranks)
    return row


def new_store(path: Path) -> RunStore:
    return RunStore(path / "results")
