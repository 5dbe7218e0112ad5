"""Training seconds per epoch against the matmul FLOP floor, per data set, model and loss.

    python benchmarks/train_throughput.py --datasets lastfm,beauty --cells sasrec:cce,gru4rec:cce \\
        --threads 1 --steps 10 --repeats 3 [--set sampler=length] [--eval] [--json]

Needs the data sets prepared (`seqbench prepare lastfm beauty --mirror ...`). Each cell builds the
trainer exactly as `seqbench train` does and, after one warm-up batch, takes the first ``--steps``
batches of an epoch (a shuffled, so unbiased, sample of its batches):

- FLOPs per step: torch's FlopCounterMode over those batches (forward + backward), in-place
  addmm_/baddbmm_ counted too (the chunked loss accumulates with them);
- s/epoch: the time of those batches scaled to the epoch's batch count, ``--repeats`` times:
  wall min and median, and the median of this process's CPU seconds (on a shared machine the
  CPU time keeps other jobs' load out of the figure; at one thread it is the step's own time);
- floor: FLOPs per epoch / the matmul rate measured at startup with a GEMM of the step's size
  ((batch_size x max_len) x hidden by hidden x items, best of 5, CPU time), and cpu s : floor;
- with ``--eval``: seconds of a full-ranking pass over the validation users (``--eval-repeats``).

Runs against any seqbench checkout (PYTHONPATH=...): only ``--set`` uses newer config fields.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate
from torch.utils.flop_counter import FlopCounterMode

from seqbench.devices import resolve_device
from seqbench.configure import make_config
from seqbench.data.prepare import load_dataset
from seqbench.training.trainer import Trainer

DEFAULT_CELLS = "sasrec:cce,gru4rec:cce"
HIDDEN = 64  # the hidden size of every preset benchmarked here (the GEMM's inner dimension)


def _addmm_flops(bias: Any, left: Any, right: Any, out_shape: Any = None, **_: Any) -> int:
    return 2 * left[0] * left[1] * right[1]


def _baddbmm_flops(bias: Any, left: Any, right: Any, out_shape: Any = None, **_: Any) -> int:
    return 2 * left[0] * left[1] * left[2] * right[2]


IN_PLACE_FLOPS = {torch.ops.aten.addmm_: _addmm_flops, torch.ops.aten.baddbmm_: _baddbmm_flops}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _clock(device: torch.device) -> float:
    """CPU seconds of this process on CPU (a shared machine's other load stays out), wall on CUDA."""
    return time.perf_counter() if device.type == "cuda" else time.process_time()


def matmul_rate(rows: int, inner: int, cols: int, device: torch.device) -> float:
    """FLOP/s of the best of 5 ``rows x inner @ inner x cols`` float32 GEMMs (CPU time on CPU)."""
    a, b = torch.randn(rows, inner, device=device), torch.randn(inner, cols, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        started = _clock(device)
        torch.mm(a, b)
        _sync(device)
        best = min(best, _clock(device) - started)
    return 2 * rows * inner * cols / best


def parse_cell(cell: str) -> tuple[str, str, dict[str, Any]]:
    """``sasrec:cce[chunked]`` -> ("sasrec", "cce", {"ce_impl": "chunked"}) (the loss-spec syntax,
    parsed here so that the script also runs against checkouts older than seqbench.losses.spec)."""
    model, _, loss = cell.partition(":")
    name, _, option = loss.partition("[")
    return model, name, ({"ce_impl": option.rstrip("]")} if option else {})


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    from seqbench.config import parse_assignments

    return parse_assignments(pairs)


def measure_cell(trainer: Trainer, steps: int, repeats: int) -> dict[str, Any]:
    batches = iter(trainer.batches.epoch(1))
    first = next(batches)
    trainer._step(first.windows, first.rows)  # warm-up: allocator, lazy init
    sample = [batch for _, batch in zip(range(steps), batches)]
    with FlopCounterMode(display=False, custom_mapping=IN_PLACE_FLOPS) as counter:
        for batch in sample:
            trainer._step(batch.windows, batch.rows)
    flops = counter.get_total_flops() / len(sample)
    wall, cpu = [], []
    scale = len(trainer.batches) / len(sample)
    for _ in range(repeats):
        _sync(trainer.device)
        started, started_cpu = time.perf_counter(), _clock(trainer.device)
        for batch in sample:
            trainer._step(batch.windows, batch.rows)
        _sync(trainer.device)
        wall.append((time.perf_counter() - started) * scale)
        cpu.append((_clock(trainer.device) - started_cpu) * scale)
    return {"flops_per_step": flops, "wall": wall, "cpu": cpu, "steps_per_epoch": len(trainer.batches)}


def eval_seconds(trainer: Trainer, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        trainer.evaluate("valid")
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="lastfm,beauty")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--cells", default=DEFAULT_CELLS, help="comma-separated model:loss, loss as cce or cce[chunked]")
    parser.add_argument("--steps", type=int, default=10, help="batches timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="config key=value for every cell")
    parser.add_argument("--eval", action="store_true", help="also time full validation passes")
    parser.add_argument("--eval-repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    overrides = parse_sets(args.sets)
    rows = []
    for name in args.datasets.split(","):
        dataset = load_dataset(name, args.data_dir)
        for cell in args.cells.split(","):
            model, loss, params = parse_cell(cell)
            config = make_config(None, {"dataset": name, "model": model, "loss": loss, "loss_params": params, "threads": args.threads, **overrides})
            trainer = Trainer(config, dataset, device)
            rate = matmul_rate(config.batch_size * config.max_len, HIDDEN, dataset.num_items, device)
            result = measure_cell(trainer, args.steps, args.repeats)
            floor = result["flops_per_step"] * result["steps_per_epoch"] / rate
            cpu = statistics.median(result["cpu"])
            row = {
                "dataset": name,
                "model": model,
                "loss": cell.split(":", 1)[1],
                "wall s/epoch min": round(min(result["wall"]), 2),
                "wall s/epoch median": round(statistics.median(result["wall"]), 2),
                "cpu s/epoch median": round(cpu, 2),
                "GFLOP/step": round(result["flops_per_step"] / 1e9, 2),
                "GEMM GFLOP/s": round(rate / 1e9, 1),
                "floor s/epoch": round(floor, 2),
                "cpu/floor": round(cpu / floor, 2),
            }
            if args.eval:
                evals = eval_seconds(trainer, args.eval_repeats)
                row |= {"eval s min": round(min(evals), 2), "eval s median": round(statistics.median(evals), 2)}
            rows.append(row)
    settings = f"{device.type}, {torch.get_num_threads()} thread(s), {args.steps} batches x {args.repeats} repeats" + (f", --set {' '.join(args.sets)}" if args.sets else "")
    if args.json:
        print(json.dumps({"settings": settings, "rows": rows}, indent=2))
    else:
        print(settings)
        print(tabulate(rows, headers="keys", tablefmt="github"))


if __name__ == "__main__":
    main()
