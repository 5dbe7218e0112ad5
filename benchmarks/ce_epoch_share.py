"""Whole training epochs per exact CE implementation, side by side in one process, with the
loss-free epoch beside them: how much of an epoch the CE is, and what the fastest could save.

    python benchmarks/ce_epoch_share.py --dataset lastfm --data-dir DATA --rounds 5 [--set model.preset=original]

Every implementation (``dense``, ``auto``, ``fused``, ``chunked``, ``torch``) gets its own trainer,
built as ``seqbench train`` builds it, 1 thread; after one warm-up epoch each, the epochs are
interleaved round by round (dense, auto, fused, ... dense, auto, ...) so that a change in the
machine's load falls on all of them alike. ``no loss`` is the same model and batches with the CE
replaced by ``mean(hidden^2)``: the encoder's forward and backward and Adam's step, which no CE
implementation can remove (Amdahl's bound on any CE speed-up). The floor line is the exact CE's
three GEMMs (logits, d hidden, d table: 6 n N d FLOPs over the epoch's selected positions), each
timed at its own shape (best of 5), plus one ``exp`` over the n x N logits: CPU seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from tabulate import tabulate

from seqbench.configure import make_config
from seqbench.data.prepare import load_dataset
from seqbench.training.trainer import Trainer

IMPLEMENTATIONS = ("dense", "auto", "fused", "chunked", "torch")


class NoLoss:
    """Stands in for the CE: a scalar that still back-propagates through the whole encoder."""

    needs_negatives = False

    def __call__(self, batch: Any) -> SimpleNamespace:
        return SimpleNamespace(value=batch.hidden.pow(2).mean())


def epoch_cpu_seconds(trainer: Trainer, epoch: int) -> float:
    batches = list(trainer.batches.epoch(epoch))
    started = time.process_time()
    for batch in batches:
        trainer._step(batch.windows, batch.rows)
    return time.process_time() - started


def build(args: argparse.Namespace, implementation: str) -> Trainer:
    overrides: dict[str, Any] = {"dataset": args.dataset, "model": args.model, "loss": "cce", "threads": 1}
    overrides |= dict(item.split("=", 1) for item in args.sets)
    if implementation not in ("auto", "no loss"):
        overrides["ce_impl"] = implementation
    trainer = Trainer(make_config(None, overrides), load_dataset(args.dataset, args.data_dir), torch.device("cpu"))
    if implementation == "no loss":
        trainer.loss = NoLoss()  # type: ignore[assignment]  # a stand-in with the two members _step uses
    epoch_cpu_seconds(trainer, 1)  # warm-up: the allocator's first epoch
    return trainer


def floor_seconds(trainer: Trainer) -> tuple[float, int]:
    """CPU seconds of the exact CE's GEMMs and exp over one epoch, and the positions it covers."""
    steps, positions = 0, 0
    for batch in trainer.batches.epoch(2):
        _, targets = trainer.model.training_batch(batch.windows, trainer.generator)
        positions, steps = positions + int((targets > 0).sum()), steps + 1
    items, hidden = trainer.model.item_embeddings().shape
    rows = positions // steps
    x, table, logits = torch.randn(rows, hidden), torch.randn(items, hidden), torch.randn(rows, items)
    gemms = (lambda: x @ table.T, lambda: logits @ table, lambda: logits.T @ x)  # logits, d hidden, d table
    per_step = sum(min(_cpu_time(gemm) for _ in range(5)) for gemm in gemms)
    per_step += min(_cpu_time(lambda: torch.exp(logits)) for _ in range(5))
    return per_step * positions / rows, positions


def _cpu_time(work: Any) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="config key=value (as `seqbench train --set`)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    trainers = {name: build(args, name) for name in (*IMPLEMENTATIONS, "no loss")}
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for round_number in range(args.rounds):
        for name, trainer in trainers.items():
            seconds[name].append(epoch_cpu_seconds(trainer, round_number + 2))
    dense = statistics.median(seconds["dense"])
    loss_free = statistics.median(seconds["no loss"])
    floor, positions = floor_seconds(trainers["dense"])
    rows = [[name, statistics.median(values), min(values), statistics.median(values) / dense] for name, values in seconds.items()]
    rows.append(["no loss + CE floor", loss_free + floor, None, (loss_free + floor) / dense])
    print(f"{args.dataset} {args.model}/cce {' '.join(args.sets)}: CPU s per epoch, 1 thread, {args.rounds} interleaved rounds, "
          f"{positions:,} positions per epoch")
    print(tabulate(rows, headers=["implementation", "median s", "min s", "x dense"], floatfmt=".2f"))
    print(f"CE floor (3 GEMMs + exp): {floor:.2f} s; the CE of dense takes {dense - loss_free:.2f} s of its epoch")


if __name__ == "__main__":
    main()
