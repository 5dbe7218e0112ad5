"""Training and evaluating on a large catalogue: peak memory measured against memprof's prediction,
seconds per epoch against the FLOP floor, evaluation seconds, process RSS.

    python benchmarks/large_catalogue.py --items 1e6 --users 1000 --length 20 \\
        --losses "sce,cce[chunked],sampled-ce,bce" --epochs 2 --threads 2 --work /tmp/large [--json]

1. ``seqbench prepare synthetic --set catalog=full`` makes the catalogue (every id 1..N exists),
   timed.
2. Per loss, ``seqbench train`` in a child process (the real entry point): the run record gives
   the tracked peak of live tensor bytes and the training seconds; ``wait4`` gives the child's
   maximum resident set size (weights, Adam, scores, Python, torch's allocator slack). On CUDA
   (``--device cuda``) the run's peak is ``torch.cuda.max_memory_allocated``.
3. memprof's prediction for the same step (fake tensors, full windows: an upper bound where
   sequences are shorter than ``--max-len``).
4. The FLOP floor: FLOPs of a sample of the epoch's real batches (torch's FlopCounterMode, as
   ``train_throughput.py``) times the batches per epoch, over the rate of a GEMM of the step's size.
5. Seconds of one full-ranking validation pass over all N items (blocks of bounded memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import HIDDEN, eval_seconds, matmul_rate, measure_cell  # noqa: E402

from seqbench.configure import loss_options, make_config  # noqa: E402
from seqbench.data.prepare import load_dataset  # noqa: E402
from seqbench.devices import resolve_device  # noqa: E402
from seqbench.losses.spec import split_loss_list  # noqa: E402
from seqbench.memprof.profile import profile_step  # noqa: E402
from seqbench.training.trainer import Trainer  # noqa: E402

GIB = 2**30


def seqbench_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "seqbench", *args]


def prepare(args: argparse.Namespace, data_dir: Path) -> float:
    sets = [f"items={int(args.items)}", f"users={args.users}", f"length={args.length}", "catalog=full"]
    started = time.perf_counter()
    subprocess.run(seqbench_command("prepare", "synthetic", "--data-dir", str(data_dir), "--quiet", "--force",
                                    *[part for pair in sets for part in ("--set", pair)]), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def train_child(args: argparse.Namespace, loss: str, data_dir: Path, results: Path) -> tuple[dict[str, Any], int]:
    """The run record of ``seqbench train`` and the child's max RSS in bytes."""
    command = seqbench_command(
        "train", "--dataset", "synthetic", "--model", "sasrec", "--loss", loss, "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--max-len", str(args.max_len), "--data-dir", str(data_dir),
        "--results", str(results), "--json", "--quiet", "--force", "--device", args.device,
        "--set", f"threads={args.threads}", "--set", f"eval_every={args.epochs}",
    )
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"train {loss} failed: {output[-2000:]}")
    return json.loads(output), usage.ru_maxrss * 1024


def floor_and_eval(args: argparse.Namespace, loss: str, data_dir: Path) -> dict[str, float]:
    dataset = load_dataset("synthetic", data_dir)
    fields = {"dataset": "synthetic", "model": "sasrec", "batch_size": args.batch_size, "max_len": args.max_len,
              "threads": args.threads, **loss_options(loss, {})}
    device = resolve_device(args.device)
    trainer = Trainer(make_config(None, fields), dataset, device)
    # The GEMM rate at the step's rows and d over a 32k-item tile (a 10^6-column product would be 51 GB).
    rate = matmul_rate(args.batch_size * args.max_len, HIDDEN, min(dataset.num_items, 2**15), device)
    cell = measure_cell(trainer, args.floor_steps, 1)
    return {
        "floor": cell["flops_per_step"] * cell["steps_per_epoch"] / rate,
        "gflop_per_step": cell["flops_per_step"] / 1e9,
        "eval": min(eval_seconds(trainer, 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=float, default=1e6)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--losses", default="sce,cce[chunked],sampled-ce,bce")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (the GPU check runs it on cuda)")
    parser.add_argument("--floor-steps", type=int, default=2, help="batches whose FLOPs are counted for the floor")
    parser.add_argument("--work", type=Path, default=Path("large-catalogue"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir, results = args.work / "data", args.work / "results"
    prepare_seconds = prepare(args, data_dir)
    rows = []
    for loss in split_loss_list(args.losses):
        record, rss = train_child(args, loss, data_dir, results)
        training = record["training"]
        predicted = profile_step("sasrec", loss, training["num_items"], args.batch_size, args.max_len, HIDDEN, mode="predict").peak_bytes
        timing = floor_and_eval(args, loss, data_dir)
        per_epoch = training["train_seconds"] / training["epochs_run"]
        measured = training["peak_memory_bytes"]
        rows.append({
            "loss": loss,
            "s/epoch": round(per_epoch, 1),
            "floor s/epoch": round(timing["floor"], 1),
            "s : floor": round(per_epoch / timing["floor"], 2),
            "GFLOP/step": round(timing["gflop_per_step"], 1),
            "eval s (valid)": round(timing["eval"], 1),
            "peak GiB measured": round(measured / GIB, 3),
            "predicted GiB": round(predicted / GIB, 3) if predicted else None,
            "measured : predicted": round(measured / predicted, 4) if predicted else None,
            "max RSS GiB": round(rss / GIB, 2),
            "valid NDCG@10": round(record["metrics"]["valid"]["NDCG@10"], 4),
        })
    settings = (f"synthetic catalog=full, {int(args.items):,} items, {args.users} users, mean length {args.length} "
                f"(prepared in {prepare_seconds:.1f} s); sasrec d={HIDDEN}, batch {args.batch_size} x {args.max_len}, "
                f"{args.epochs} epochs, {args.threads} thread(s), {args.device}")
    if args.json:
        print(json.dumps({"settings": settings, "rows": rows}, indent=2))
    else:
        print(settings)
        print(tabulate(rows, headers="keys", tablefmt="github"))


if __name__ == "__main__":
    main()
