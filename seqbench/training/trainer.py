"""Train one model with one loss by the protocol, evaluate it, and store the run.

Adam, early stopping on a validation metric (``selection_metric``, NDCG@10 by default) with patience, best weights restored before the final
evaluation; every evaluation records validation metrics, test NDCG@10 and the training seconds so
far (evaluation excluded), for the NDCG-versus-wall-clock figure.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from seqbench.config import RunConfig
from seqbench.data.batches import TrainBatches
from seqbench.data.prepare import load_dataset
from seqbench.data.sequences import PreparedDataset
from seqbench.devices import resolve_device
from seqbench.errors import InputError, RuntimeFailure, Terminated
from seqbench.events import EventKind, Progress, StopRun
from seqbench.losses.base import Loss, LossBatch
from seqbench.losses.registry import build_loss, loss_class
from seqbench.measure.allocations import AllocationTracker
from seqbench.measure.ranking import Evaluation, evaluate_split
from seqbench.models.base import SequentialRecommender
from seqbench.models.registry import build_model
from seqbench.storage.layout import ResultsLayout
from seqbench.storage.locks import exclusive
from seqbench.storage.store import RunStore, StoredRun, ranks_frame, stale_reason
from seqbench.training.pretrain import cached_pretrain
from seqbench.training.record import RunLog, run_row
from seqbench.training.resume import Resumed, load_point, random_states, restore_random_states, save_point
from seqbench.training.threads import run_threads

CURVE_METRIC = "NDCG@10"  # the test metric recorded per epoch for the wall-clock figure
# CPU peak memory is tracked over the first steps only: every full batch has the same shapes, and
# tracking every operator of every step would slow training down.
TRACKED_STEPS = 2
# A finite loss this many times epoch 1's has diverged (lr=1e4 reached 2.5e10 and was stored
# "completed"); every loss here starts near its scale (ln N for CE) and only falls when training works.
DIVERGED_FACTOR = 1000


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_seconds: float  # cumulative, evaluation excluded
    peak_memory_bytes: int
    valid: dict[str, float] = field(default_factory=dict)
    test_ndcg10: float = float("nan")

    def as_row(self) -> dict[str, Any]:
        row = {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_seconds": self.train_seconds,
            "peak_memory_bytes": self.peak_memory_bytes,
            "test_NDCG@10": self.test_ndcg10,
        }
        row.update({f"valid_{name}": value for name, value in self.valid.items()})
        return row


class Trainer:
    """One run: builds model, loss and batches from the config, trains, evaluates."""

    def __init__(self, config: RunConfig, dataset: PreparedDataset, device: torch.device, pretrain_cache: Path | None = None) -> None:

        self.config, self.dataset, self.device = config, dataset, device
        self.run_id = config.run_id(device.type)
        # CPU threads are pinned by run_training's run_threads block, not here: process-wide.
        self.threads_used = torch.get_num_threads()
        torch.manual_seed(config.seed)
        self.model: SequentialRecommender = build_model(
            config.model, dataset.num_items, config.max_len, config.model_params, num_attributes=dataset.num_attributes
        ).to(device)
        self.notes: list[str] = []
        if config.pretrain_epochs > 0:
            self._pretrain(pretrain_cache)
        positions = loss_class(config.loss).positions_for(config.model, config.positions)  # type: ignore[arg-type]  # validated: "all" or "last"
        self.loss: Loss = build_loss(
            config.loss, dataset.num_items, config.loss_params, positions, item_counts=dataset.item_counts()
        ).to(device)
        self.batches = TrainBatches(
            dataset.train, config.max_len, config.batch_size, config.seed, config.augment, config.augment_stride, config.sampler
        )
        # Batches of similar lengths are cut to their longest window (exact: the models ignore
        # left padding); only with the length sampler, whose run id differs anyway, because a
        # narrower batch draws different dropout masks.
        self.trim = config.sampler == "length" and self.model.left_padding_free
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.records: list[EpochRecord] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch = 0
        self.first_loss: float | None = None  # epoch 1's mean training loss, the yardstick of divergence
        self.peak_bytes = 0

    def _pretrain(self, cache: Path | None) -> None:
        state, note = cached_pretrain(self.dataset, self.config, self.device, cache)
        self.model.load_state_dict(state, strict=False)
        if note:
            self.notes.append(note)

    # --- training -------------------------------------------------------------------------
    def _autocast(self) -> Any:
        enabled = self.config.bf16 and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _step(self, windows: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if self.trim:
            windows = trim_padding(windows)
        # Last step's gradients go before the forward pass, not just before backward: they would
        # otherwise sit in memory through the forward and the loss (a catalogue-sized table each).
        self.optimizer.zero_grad(set_to_none=True)
        inputs, targets = self.model.training_batch(windows.to(self.device), self.generator)
        with self._autocast():
            hidden = self.forward(inputs)
        history = self.batches.histories(rows).to(self.device) if self.loss.needs_negatives else None
        batch = LossBatch.for_model(self.model, hidden.float(), targets, history, self.generator)
        value = self.loss(batch).value
        value.backward()
        self.optimizer.step()
        return value.detach()

    def _tracked_step(self, windows: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return self._step(windows, rows)
        tracker = AllocationTracker()
        tracker.adopt(self._held_tensors())  # what the step starts with: counted once, as live
        with tracker:
            value = self._step(windows, rows)
        self.peak_bytes = max(self.peak_bytes, tracker.peak_bytes)
        return value

    def _held_tensors(self) -> list[torch.Tensor]:
        """Parameters (of the model and the loss), their gradients and the optimiser's state."""
        params = [*self.model.parameters(), *self.loss.parameters()]
        grads = [p.grad for p in params if p.grad is not None]
        states = [value for state in self.optimizer.state.values() for value in state.values() if isinstance(value, torch.Tensor)]
        return [*params, *grads, *states]

    def train_epoch(self, epoch: int, progress: Progress | None) -> float:
        self.model.train()
        total = torch.zeros((), device=self.device)
        steps = 0
        for batch in self.batches.epoch(epoch):
            tracked = epoch == 1 and steps < TRACKED_STEPS
            value = self._tracked_step(batch.windows, batch.rows) if tracked else self._step(batch.windows, batch.rows)
            total += value
            steps += 1
            if progress:
                progress(EventKind.BATCH, {"epoch": epoch, "step": steps, "steps": len(self.batches)})
        mean = float(total) / max(steps, 1)
        if not np.isfinite(mean):
            raise RuntimeFailure(f"diverged at epoch {epoch}: the training loss became NaN/inf; lower the learning rate (--set lr=...)")
        self.first_loss = mean if self.first_loss is None else self.first_loss
        if abs(mean) > DIVERGED_FACTOR * (abs(self.first_loss) + 1.0):
            raise RuntimeFailure(f"diverged at epoch {epoch}: training loss {mean:.3g} is over {DIVERGED_FACTOR:,} times epoch 1's "
                                 f"{self.first_loss:.3g}; lower the learning rate (--set lr=...)")
        return mean

    def peak_memory(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return int(self.peak_bytes)

    # --- evaluation -----------------------------------------------------------------------
    def evaluate(self, split_name: str) -> Evaluation:
        split = self.dataset.valid if split_name == "valid" else self.dataset.test
        with self._autocast():
            return evaluate_split(
                self.model, split, self.config.max_len, self.device, self.config.eval_batch_size, self.config.exclude_seen, self.config.ks
            )

    def _record_evaluation(self, epoch: int, train_loss: float, seconds: float) -> bool:
        """Evaluate, store the epoch row, keep the best weights; True if validation improved."""
        valid = self.evaluate("valid").metrics
        test = self.evaluate("test").metrics
        self.records.append(EpochRecord(epoch, train_loss, seconds, self.peak_memory(), valid, test.get(CURVE_METRIC, float("nan"))))
        metric = self.config.selection_metric
        best_so_far = max((r.valid.get(metric, -1.0) for r in self.records[:-1]), default=-1.0)
        improved = valid.get(metric, -1.0) > best_so_far
        if improved or self.best_state is None:
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.best_epoch = epoch
        return improved

    def fit(self, progress: Progress | None = None, resume: Path | None = None) -> None:
        """Train to the end, early stopping or the time budget; continue from ``resume`` when it holds this run's point."""
        config = self.config
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if progress:
            progress(EventKind.START, {"epochs": config.epochs, "steps": len(self.batches)})
        if config.epochs == 0:
            self._record_evaluation(0, float("nan"), 0.0)
            return
        position = self._resume_from(resume, progress) if resume is not None else None
        first = position.epoch + 1 if position else 1
        seconds, stale = (position.seconds, position.stale) if position else (0.0, 0)
        if position and config.patience and stale >= config.patience:
            return  # stopped early just before it was interrupted
        for epoch in range(first, config.epochs + 1):
            started = time.perf_counter()
            train_loss = self.train_epoch(epoch, progress)
            seconds += time.perf_counter() - started
            out_of_time = config.time_budget is not None and seconds >= config.time_budget
            if epoch % config.eval_every == 0 or epoch == config.epochs or out_of_time:
                stale = 0 if self._record_evaluation(epoch, train_loss, seconds) else stale + 1
                if progress:
                    progress(EventKind.EPOCH, self.records[-1].as_row() | {"best_epoch": self.best_epoch})
                if resume is not None and not out_of_time:
                    problem = save_point(resume, self.run_id, Resumed(epoch, seconds, stale), self._state())
                    if problem and progress:
                        progress(EventKind.NOTE, {"text": f"run {self.run_id}: {problem}"})
                if config.patience and stale >= config.patience:
                    break
            if out_of_time:
                self.notes.append(f"stopped by the time budget after epoch {epoch}")
                break

    # --- resume points --------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best_state": self.best_state,
            "best_epoch": self.best_epoch,
            "records": [dataclasses.asdict(record) for record in self.records],
            "first_loss": self.first_loss,
            "peak_bytes": self.peak_bytes,
            "notes": list(self.notes),
            "random": random_states(self.device, self.generator),
        }

    def _resume_from(self, path: Path, progress: Progress | None) -> Resumed | None:
        point = load_point(path, self.run_id, self.device)
        if point is None:
            return None
        position, state = point
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.best_state, self.best_epoch = state["best_state"], state["best_epoch"]
        self.records = [EpochRecord(**record) for record in state["records"]]
        self.first_loss, self.peak_bytes = state["first_loss"], state["peak_bytes"]
        self.notes = [*state["notes"], f"resumed after epoch {position.epoch}"]
        restore_random_states(state["random"], self.generator)
        if progress:
            progress(EventKind.NOTE, {"text": f"run {self.run_id}: resuming after epoch {position.epoch} ({path})"})
        return position

    def final_evaluations(self) -> dict[str, Evaluation]:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return {"valid": self.evaluate("valid"), "test": self.evaluate("test")}


def trim_padding(windows: torch.Tensor) -> torch.Tensor:
    """Left-padded windows without the columns that are padding in every row (2 columns at least)."""
    width = max(int((windows > 0).sum(dim=1).max()), 2)
    return windows[:, windows.shape[1] - width :]


def run_training(
    config: RunConfig,
    dataset: PreparedDataset,
    device: torch.device,
    pretrain_cache: Path | None = None,
    progress: Progress | None = None,
    live_log: Path | None = None,
    resume: Path | None = None,
) -> tuple[StoredRun, BaseException | None]:
    """Train and evaluate one run in memory; nothing touches the run store but the ``resume`` point.

    Returns the whole run (status ``completed``, ``pruned``, ``failed`` or ``interrupted``) and the exception
    that ended it, if any, so that the caller (a local process or a remote worker's driver)
    writes it into the store and decides what to raise.
    """
    with run_threads(config.threads):
        return _train_and_evaluate(config, dataset, device, pretrain_cache, progress, live_log, resume)


def _train_and_evaluate(
    config: RunConfig,
    dataset: PreparedDataset,
    device: torch.device,
    pretrain_cache: Path | None,
    progress: Progress | None,
    live_log: Path | None = None,
    resume: Path | None = None,
) -> tuple[StoredRun, BaseException | None]:
    trainer = Trainer(config, dataset, device, pretrain_cache)
    run_id = trainer.run_id
    log = RunLog(run_id, config, device, progress, live_log)
    status, reason = "completed", ""
    error: BaseException | None = None
    try:
        trainer.fit(log, resume)
    except StopRun as stop:
        status, reason = "pruned", str(stop) or "stopped early by the progress callback"
    except KeyboardInterrupt as stop:
        how = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted by the user (Ctrl-C)"
        status, reason, error = "interrupted", how, stop
    except RuntimeFailure as failure:
        status, reason, error = "failed", failure.message, failure
    except (torch.OutOfMemoryError, MemoryError) as oom:
        status, reason = "failed", f"out of memory: {str(oom).splitlines()[0] if str(oom) else 'MemoryError'}"
        error = RuntimeFailure(reason + "; lower --batch-size or use --set ce_impl=chunked")
    except Exception as bug:  # a bug must still leave a 'failed' run with its reason in the store
        status, reason, error = "failed", f"{type(bug).__name__}: {bug}", bug
    evaluations = trainer.final_evaluations() if status in ("completed", "pruned") else {}
    row = run_row(run_id, trainer, status, reason, evaluations)
    stored = StoredRun(
        run_id=run_id,
        row=row,
        epochs=pd.DataFrame([record.as_row() for record in trainer.records]),
        ranks=ranks_frame(
            {split: (getattr(dataset, split).users, evaluation.ranks) for split, evaluation in evaluations.items()}
        ),
        checkpoint={k: v.detach().cpu() for k, v in (trainer.best_state or trainer.model.state_dict()).items()},
        log=log.text(row),
    )
    return stored, error


def raise_for_outcome(stored: StoredRun, error: BaseException | None) -> None:
    """Re-raise what ended a stored run: Ctrl-C as such, failures as a one-line RuntimeFailure."""
    if isinstance(error, RuntimeFailure):
        raise RuntimeFailure(f"run {stored.run_id} failed: {stored.row['reason']} (stored with status 'failed')")
    if error is not None:
        raise error


def write_or_explain(store: RunStore, stored: StoredRun, force: bool, resume: Path) -> bool:
    """``store.write``; a full or read-only disk becomes one line that names the directory, the
    space the run needs and what is kept (its resume point, from which the same command resumes)."""
    try:
        return store.write(stored, replace_completed=force)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as a RuntimeError
        needed = sum(t.numel() * t.element_size() for t in stored.checkpoint.values()) if stored.checkpoint else 0
        kept = f"its last resume point {resume} is kept" if resume.is_file() else "nothing of it could be kept"
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).splitlines()[0][:120]
        if isinstance(error, RuntimeError) and shutil.disk_usage(store.root).free < needed + 2**20:
            reason = f"No space left on device; torch: {reason}"
        raise RuntimeFailure(
            f"storing run {stored.run_id} in {store.root} failed ({reason}): it needs about "
            f"{max(needed, 2**20) / 2**20:,.0f} MiB free there; {kept}: free space (or choose --results elsewhere) and run "
            "the same command again"
        ) from None


def train_run(
    config: RunConfig,
    data_dir: Path,
    results: Path,
    mirror: Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
    restart: bool = False,
) -> StoredRun:
    """Train, evaluate and store one run; a failure is stored as a ``failed`` run and re-raised.

    A run stopped before (interrupted, killed) continues from its last evaluation
    (:mod:`seqbench.training.resume`) unless ``restart``; an interrupted run keeps its resume point.

    One process at a time trains a run id (a lock under ``results/locks/``; another process that
    wants the same run waits, saying so). A run already stored as completed is returned as it is
    (``reused``) unless ``force``, and even then only a completed re-run replaces it.
    """
    device = resolve_device(config.device)
    store = RunStore(results)
    store.check_writable()  # a --results that names a file fails now, not after training
    layout = ResultsLayout(results)
    run_id = config.run_id(device.type)

    def waiting() -> None:
        if progress is not None:
            progress(EventKind.NOTE, {"text": f"run {run_id} is being trained by another process: waiting for it"})

    dataset = load_dataset(config.dataset, data_dir, mirror)  # a damaged data set is reported even when the run is stored
    with exclusive(layout.lock(run_id), waiting):
        if not force and store.is_completed(run_id):  # stored before, or by the process waited for
            stale = stale_reason(store.row(run_id), dataset.fingerprint)
            if stale:
                raise InputError(f"{stale}: --force trains it again on the current data")
            return store.stored(run_id)
        live, resume = layout.live_log(run_id), layout.resume_point(run_id)
        if restart:
            resume.unlink(missing_ok=True)
        try:
            stored, error = run_training(config, dataset, device, layout.pretrain, progress, live, resume)
            if not write_or_explain(store, stored, force, resume) and progress is not None:
                progress(EventKind.NOTE, {"text": f"run {run_id} ended {stored.status}: the completed run stored before is kept"})
            if stored.status != "interrupted":
                resume.unlink(missing_ok=True)
        finally:
            live.unlink(missing_ok=True)  # the stored run.log has it all; a crash leaves nothing to mislead
    raise_for_outcome(stored, error)
    return stored
