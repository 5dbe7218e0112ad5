"""Training sequences per second and evaluation users per second, per model and loss.

    python benchmarks/train_throughput.py --dataset beauty --steps 20 [--json]

Needs the data set prepared (`seqbench prepare beauty --mirror ...`). Each cell builds the
trainer exactly as `seqbench train` does, times ``--steps`` training batches after one warm-up
batch, then one full-ranking pass over the test users.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tabulate import tabulate

from seqbench.losses.spec import parse_loss_spec
from seqbench.training.threads import run_threads
from seqbench.training.trainer import Trainer, load_dataset, make_config, resolve_device

# Losses in the loss-spec syntax (seqbench/losses/spec.py): cce[chunked] = cce with ce_impl=chunked.
# Plain ce keeps the trainer's default (ce_impl=auto), so its options are spelled out.
CELLS = [
    ("sasrec", "bce"),
    ("sasrec", "ce[auto]"),
    ("sasrec", "cce[dense]"),
    ("sasrec", "cce[chunked]"),
    ("gru4rec", "bce"),
    ("gru4rec", "ce[auto]"),
    ("gru4rec", "cce[dense]"),
    ("gru4rec", "cce[chunked]"),
]


def measure(trainer: Trainer, steps: int) -> tuple[float, float]:
    batches = iter(trainer.batches.epoch(1))
    first = next(batches)
    trainer._step(first.windows, first.rows)  # warm-up: allocator, lazy init
    started, sequences = time.perf_counter(), 0
    for _, batch in zip(range(steps), batches):
        trainer._step(batch.windows, batch.rows)
        sequences += len(batch.rows)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    train_rate = sequences / (time.perf_counter() - started)
    started = time.perf_counter()
    trainer.evaluate("test")
    eval_rate = len(trainer.dataset.test) / (time.perf_counter() - started)
    return train_rate, eval_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset, args.data_dir)
    rows = []
    with run_threads(args.threads) as threads:  # as a run pins them: the trainer does not
        for model, loss in CELLS:
            spec = parse_loss_spec(loss)
            config = make_config(None, {"dataset": args.dataset, "model": model, "loss": spec.name, "loss_params": spec.params})
            train_rate, eval_rate = measure(Trainer(config, dataset, device), args.steps)
            rows.append({"model": model, "loss": spec.label, "train seq/s": round(train_rate), "eval users/s": round(eval_rate)})
    if args.json:
        print(json.dumps({"dataset": args.dataset, "device": device.type, "threads": threads, "rows": rows}, indent=2))
    else:
        print(f"{args.dataset} on {device.type} ({threads} threads), {args.steps} batches of 256")
        print(tabulate(rows, headers="keys", tablefmt="github"))


if __name__ == "__main__":
    main()
