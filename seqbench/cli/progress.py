"""Rich progress for training: a bar per epoch on stderr, and one line per evaluated epoch."""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from seqbench.cli.common import err_console
from seqbench.events import EventKind


class TrainingProgress:
    """A ``Progress`` callback for :func:`seqbench.training.trainer.train_run`."""

    def __init__(self, label: str, quiet: bool = False) -> None:
        self.label = label
        self.quiet = quiet
        self.bar: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> TrainingProgress:
        if not self.quiet:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, event: EventKind, info: dict[str, Any]) -> None:
        if self.bar is None:
            return
        if event == EventKind.NOTE:  # e.g. waiting for another process that trains the same run
            self.bar.console.print(info["text"], highlight=False, markup=False, soft_wrap=True)
        elif event == EventKind.START:
            self.task = self.bar.add_task(f"{self.label} epoch 1", total=info["steps"])
        elif event == EventKind.BATCH and self.task is not None:
            self.bar.update(self.task, completed=info["step"], description=f"{self.label} epoch {info['epoch']}")
        elif event == EventKind.EPOCH:
            self.bar.console.print(
                f"{self.label} epoch {info['epoch']:>3}  loss {info['train_loss']:.4f}  "
                f"valid NDCG@10 {info.get('valid_NDCG@10', float('nan')):.4f}  "
                f"test NDCG@10 {info['test_NDCG@10']:.4f}  {info['train_seconds']:.1f}s  best {info['best_epoch']}",
                highlight=False,
            )


def show_trial_progress(event: str, info: dict[str, Any]) -> None:
    """One line per trial started and finished (validation only: no test metric while tuning)."""
    where = f"{info['dataset']}/{info['model']}/" if "dataset" in info and "model" in info else ""
    if event == "start" and "retrain_seed" in info:
        err_console.print(f"{where}{info['loss']}: retraining the chosen config with seed {info['retrain_seed']}", highlight=False)
    if event == "trial-start":
        params = ", ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}" for key, value in info["params"].items())
        err_console.print(f"{where}{info['loss']} trial {info['trial']}: training {params}", highlight=False)
    if event != "trial":
        return
    how = "stored, not retrained" if info["reused"] else f"{info['wall_seconds']:.1f}s"
    err_console.print(
        f"{where}{info['loss']} trial {info['number']} ({info['number'] + 1} of {info['trials']}): {info['state']}, "
        f"valid {info['value']:.4f}, {info['epochs_run']} epochs ({how})",
        highlight=False,
    )
