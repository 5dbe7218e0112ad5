"""A run as stored: its ``run.parquet`` row and its ``run.log`` text, from a finished trainer."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

import seqbench
from seqbench.config import RunConfig
from seqbench.events import EventKind, Progress
from seqbench.losses.base import Loss
from seqbench.plugins import describe
from seqbench.storage.layout import ResultsLayout

if TYPE_CHECKING:
    from seqbench.data.sequences import PreparedDataset
    from seqbench.measure.ranking import Evaluation


class FinishedTraining(Protocol):
    """What a row is made of: the trainer (:class:`seqbench.training.trainer.Trainer`) after ``fit``."""

    config: RunConfig
    dataset: PreparedDataset
    loss: Loss
    device: torch.device
    records: list[Any]  # EpochRecord, one per evaluation
    best_epoch: int
    notes: list[str]
    threads_used: int

    @property
    def model(self) -> torch.nn.Module: ...  # read-only here, so any module subclass will do

    def peak_memory(self) -> int: ...


def run_row(
    run_id: str,
    trainer: FinishedTraining,
    status: str,
    reason: str,
    evaluations: dict[str, Evaluation],
) -> dict[str, Any]:
    config, dataset = trainer.config, trainer.dataset
    row: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "reason": reason,
        "dataset": config.dataset,
        "model": config.model,
        "loss": config.loss,
        "seed": config.seed,
        "split": split_method(dataset.meta),
        "exclude_seen": config.exclude_seen,
        "positions": trainer.loss.positions,
        "augment": config.augment,
        "negatives": int(config.loss_params.get("num_negatives", _default_negatives(trainer.loss))),
        "ce_impl": trainer.loss.implementation_used(),  # what ran: ``auto`` resolved
        "device": trainer.device.type,
        "epochs_run": max((r.epoch for r in trainer.records), default=0),
        "best_epoch": trainer.best_epoch,
        "train_seconds": trainer.records[-1].train_seconds if trainer.records else 0.0,
        "peak_memory_bytes": trainer.peak_memory(),
        "num_items": dataset.num_items,
        "num_params": sum(p.numel() for p in trainer.model.parameters()),
        "notes": "; ".join(trainer.notes),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seqbench_version": seqbench.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "config_json": json.dumps(config.hash_payload(), sort_keys=True, default=str),
    }
    row["threads_used"] = trainer.threads_used  # torch's intra-op threads (config threads=0: the process's)
    row["selection_metric"] = config.selection_metric
    row["paper_preset"] = config.paper_preset
    row["sampler"] = config.sampler
    row["data_fingerprint"] = dataset.fingerprint  # checked before a stored run is reused (stale_reason)
    row["loss_code"] = describe("loss", config.loss)  # where the code came from (plugin file, digest, version)
    row["model_code"] = describe("model", config.model)
    for name in ("epochs", "patience", "batch_size", "max_len", "lr", "weight_decay", "eval_every", "pretrain_epochs"):
        row[name] = getattr(config, name)
    row["time_budget"] = float(config.time_budget) if config.time_budget is not None else float("nan")
    row["loss_params_json"] = json.dumps(config.loss_params, sort_keys=True, default=str)
    row["model_params_json"] = json.dumps(config.model_params, sort_keys=True, default=str)
    for split, evaluation in evaluations.items():
        row.update({f"{split}_{name}": value for name, value in evaluation.metrics.items()})
    return row


def split_method(meta: dict[str, Any]) -> str:
    """The split a prepared data set was cut with (meta.json's ``split.method``)."""
    split = meta.get("split", "leave-one-out")
    return str(split.get("method", "leave-one-out")) if isinstance(split, dict) else str(split)


def _default_negatives(loss: Loss) -> int:
    if not loss.needs_negatives:
        return 0
    return int(getattr(loss.params, "num_negatives", 1))


class RunLog:
    """A run's progress as plain text lines (stored as ``run.log``); forwards every event.

    With ``live`` (``results/running/<run_id>.log``) each line is also appended there as it is
    made, so a long run started with ``--quiet`` can be followed (``seqbench runs --running``,
    ``tail -f``); the caller removes the file once the run is stored.
    """

    def __init__(self, run_id: str, config: RunConfig, device: torch.device, progress: Progress | None, live: Path | None = None) -> None:
        self.progress = progress
        self.live = live
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.lines: list[str] = []
        if live is not None:
            live.parent.mkdir(parents=True, exist_ok=True)
            live.write_text("")
        self._add(f"{started} seqbench {seqbench.__version__} run {run_id} on {device.type} pid {os.getpid()}")
        self._add("config " + json.dumps(config.hash_payload(), sort_keys=True, default=str))

    def _add(self, line: str) -> None:
        self.lines.append(line)
        if self.live is not None:
            with open(self.live, "a") as out:
                out.write(line + "\n")

    def __call__(self, event: EventKind, info: dict[str, Any]) -> None:
        if event == EventKind.EPOCH:
            valid = " ".join(f"{k} {v:.4f}" for k, v in info.items() if k.startswith("valid_"))
            self._add(
                f"epoch {info['epoch']} loss {info['train_loss']:.4f} {valid} test_NDCG@10 {info['test_NDCG@10']:.4f} "
                f"train_seconds {info['train_seconds']:.2f} peak_memory_bytes {info['peak_memory_bytes']} best_epoch {info['best_epoch']}"
            )
        elif event == EventKind.NOTE:  # e.g. "resuming after epoch 30": the log says where it started
            self._add(f"note {info['text']}")
        if self.progress is not None:
            self.progress(event, info)

    def text(self, row: dict[str, Any]) -> str:
        test = " ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("test_") and isinstance(v, float))
        end = f"{row['status']}{': ' + row['reason'] if row['reason'] else ''} best_epoch {row['best_epoch']} of {row['epochs_run']}"
        return "\n".join([*self.lines, end + (f" {test}" if test else "")]) + "\n"




def live_runs(results: Path) -> list[dict[str, Any]]:
    """The runs in progress under ``results`` from their live logs: run id, pid, whether that
    process is still alive (a killed run leaves its log behind), seconds since the last line, and
    every evaluated epoch so far (epoch, train loss, validation metrics, test NDCG@10)."""
    records = []
    for path in sorted(ResultsLayout(results).running.glob("*.log")):
        if path.is_symlink() or not path.is_file():
            continue
        lines = path.read_text(errors="replace").splitlines()
        head = lines[0].split() if lines else []
        pid = int(head[head.index("pid") + 1]) if "pid" in head[:-1] and head[head.index("pid") + 1].isdigit() else None
        records.append({
            "run_id": path.stem, "pid": pid, "alive": pid is not None and _alive(pid),
            "seconds_since_update": max(0.0, dt.datetime.now().timestamp() - path.stat().st_mtime),
            "epochs": [_epoch_fields(line) for line in lines if line.startswith("epoch ")],
        })
    return records


def _epoch_fields(line: str) -> dict[str, Any]:
    """``epoch 5 loss 8.6 valid_NDCG@10 0.01 ...`` as a dict (the words come in name/value pairs)."""
    words = line.split()
    fields: dict[str, Any] = {}
    for name, value in zip(words[::2], words[1::2]):
        try:
            fields[name] = int(value) if name in ("epoch", "best_epoch", "peak_memory_bytes") else float(value)
        except ValueError:
            fields[name] = value
    return fields


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
