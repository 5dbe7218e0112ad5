"""CPU seconds of whole training epochs, every batch through ``Trainer._step``, one thread.

    python benchmarks/epoch_cpu_seconds.py --dataset lastfm --data-dir DATA --set model.preset=original --set loss.ce_impl=fused
    PYTHONPATH=<old checkout> python benchmarks/epoch_cpu_seconds.py ...   # the same on older code

Where ``train_throughput.py`` samples a few batches and prints FLOPs and the matmul floor, this
times whole epochs, and it uses only what every seqbench version has had (``make_config``,
``Trainer``, ``batches.epoch``, ``_step``), so one script measures the code of today and of any
earlier commit on the same machine: the before/after pairs of ``docs/performance.md``. The first
epoch includes the allocator's warm-up; the figure to quote is the median of the others. For the
FLOPs and the floor of the same cells use ``train_throughput.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from seqbench.configure import make_config

from seqbench.data.prepare import load_dataset

from seqbench.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--loss", default="cce")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="config key=value (as `seqbench train --set`)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {"dataset": args.dataset, "model": args.model, "loss": args.loss, "threads": 1}
    overrides |= dict(item.split("=", 1) for item in args.sets)
    config = make_config(None, overrides)
    dataset = load_dataset(args.dataset, args.data_dir)
    try:
        trainer = Trainer(config, dataset, torch.device("cpu"), None)
    except TypeError:  # older versions: no pre-training cache argument
        trainer = Trainer(config, dataset, torch.device("cpu"))
    seconds = []
    for epoch in range(1, args.epochs + 1):
        started = time.process_time()
        for batch in trainer.batches.epoch(epoch):
            trainer._step(batch.windows, batch.rows)
        seconds.append(time.process_time() - started)
    rest = seconds[1:] or seconds
    print(f"{args.dataset} {args.model}/{args.loss} {' '.join(args.sets)}: CPU s per epoch {[round(s, 2) for s in seconds]}, "
          f"median after the first {statistics.median(rest):.2f}")


if __name__ == "__main__":
    main()
