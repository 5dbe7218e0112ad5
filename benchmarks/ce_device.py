"""Exact softmax CE implementations on one device: time of forward + backward and peak memory.

    python benchmarks/ce_device.py --device cuda --rows 12800 --catalogs 1e5,1e6 [--bf16]

Implementations: ``dense`` (the n x N logits), ``chunked`` (seqbench's tiles; on CUDA sized by
free memory), ``fused`` (the logits kept, made and used in cache-sized strips), ``torch-chunked`` (``torch.nn.functional.linear_cross_entropy`` with
``LinearCrossEntropyOptions``, where this torch has it) and ``cut`` (Apple's cut-cross-entropy,
CUDA only, where installed). Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA (reset per
implementation; the inputs and their gradients included) and not measured on CPU. On CPU the
time is this process's CPU seconds (another job's load stays out; at ``--threads 1`` it is the
step's own time), on CUDA wall seconds. ``--rows`` and ``--catalogs`` are lists: one row per
(n, N, implementation), and a last table names the fastest implementation per (n, N), the
measurements behind ``ce_impl=auto``'s rule (``seqbench.losses.cross_entropy``). Before timing,
each implementation's loss and input gradient are compared with ``chunked`` (max abs difference).
A dense run whose logits would not fit in a third of the free memory is skipped, not run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqbench.losses.chunked_ce import (  # noqa: E402
    DEFAULT_CHUNK,
    chunked_cross_entropy,
    dense_cross_entropy,
    fused_cross_entropy,
    tile_shape,
)
from seqbench.losses.cross_entropy import cut_available  # noqa: E402

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def implementations(device: torch.device) -> dict[str, Loss]:
    found: dict[str, Loss] = {
        "chunked": lambda x, table, y: chunked_cross_entropy(x, table, None, y).mean(),
        "dense": lambda x, table, y: dense_cross_entropy(x, table, None, y).mean(),
        "fused": lambda x, table, y: fused_cross_entropy(x, table, None, y).mean(),
    }
    functional = torch.nn.functional
    if hasattr(functional, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions"):
        options = torch.nn.LinearCrossEntropyOptions()
        found["torch-chunked"] = lambda x, table, y: functional.linear_cross_entropy(x, table[1:], y - 1, options=options)
    if device.type == "cuda" and cut_available():
        from cut_cross_entropy import linear_cross_entropy

        found["cut"] = lambda x, table, y: linear_cross_entropy(x, table[1:], y - 1).mean()
    return found


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device) -> float:
    return time.perf_counter() if device.type == "cuda" else time.process_time()


def fits_dense(rows: int, items: int, device: torch.device) -> bool:
    if device.type != "cuda":
        return rows * items * 4 * 3 < 8 * 2**30
    free, _ = torch.cuda.mem_get_info(device)
    return rows * items * 4 * 3 < free


def run(name: str, loss: Loss, x: torch.Tensor, table: torch.Tensor, y: torch.Tensor, repeats: int, bf16: bool) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    device = x.device
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(repeats + 1):  # the first is a warm-up
        x.grad = table.grad = None
        _sync(device)
        started = _clock(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            value = loss(x, table, y)
        value.backward()
        _sync(device)
        times.append(_clock(device) - started)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return statistics.median(times[1:]), peak, value.detach().float(), x.grad.detach().float().clone()


def measure_shape(rows_n: int, catalog: int, args: argparse.Namespace, device: torch.device) -> list[dict[str, object]]:
    generator = torch.Generator(device=device).manual_seed(0)
    x = (torch.randn(rows_n, args.hidden, device=device, generator=generator) * 0.1).requires_grad_()
    table = (torch.randn(catalog + 1, args.hidden, device=device, generator=generator) * 0.1).requires_grad_()
    y = torch.randint(1, catalog + 1, (rows_n,), device=device, generator=generator)
    reference: tuple[torch.Tensor, torch.Tensor] | None = None
    tile = tile_shape(rows_n, catalog, DEFAULT_CHUNK, device)
    rows: list[dict[str, object]] = []
    for name, loss in implementations(device).items():
        row: dict[str, object] = {"n": rows_n, "catalog": catalog, "impl": name}
        if name in ("dense", "fused") and not fits_dense(rows_n, catalog, device):
            rows.append(row | {"note": "skipped: logits do not fit"})
            continue
        try:
            seconds, peak, value, grad = run(name, loss, x, table, y, args.repeats, args.bf16)
        except Exception as error:  # one implementation failing must not hide the others
            rows.append(row | {"note": f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"})
            continue
        if reference is None:
            reference = (value, grad)
        diff = max(float((value - reference[0]).abs()), float((grad - reference[1]).abs().max()))
        note = f"tile {tile[0]} x {tile[1]}" if name == "chunked" else ""
        rows.append(row | {"s fwd+bwd": round(seconds, 4), "peak MiB": round(peak, 1), "max |diff| vs chunked": f"{diff:.1e}", "note": note})
    return rows


def fastest(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per (n, N): the fastest implementation and each one's time relative to dense."""
    shapes = sorted({(r["n"], r["catalog"]) for r in rows})  # type: ignore[type-var]
    summary = []
    for n, catalog in shapes:
        timed = {str(r["impl"]): float(r["s fwd+bwd"]) for r in rows  # type: ignore[arg-type]
                 if r["n"] == n and r["catalog"] == catalog and "s fwd+bwd" in r}
        best = min(timed, key=timed.__getitem__)
        dense = timed.get("dense")
        summary.append({"n": n, "catalog": catalog, "n x N": f"{n * catalog:.2e}", "fastest": best,
                        **{f"{impl} / dense": round(seconds / dense, 2) if dense else None for impl, seconds in timed.items()}})
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", default="12800", help="loss positions n (B x L), comma-separated")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--catalogs", default="1e5,1e6")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--bf16", action="store_true", help="autocast the loss to bfloat16")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for rows_n in (int(float(r)) for r in args.rows.split(",")):
        for catalog in (int(float(c)) for c in args.catalogs.split(",")):
            rows += measure_shape(rows_n, catalog, args, device)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    clock = "wall" if device.type == "cuda" else "cpu"
    print(f"{device.type}{' bf16' if args.bf16 else ''}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"d = {args.hidden}, {clock} seconds, median of {args.repeats}")
    print(tabulate(rows, headers="keys", tablefmt="github"))
    print()
    print(tabulate(fastest(rows), headers="keys", tablefmt="github"))


if __name__ == "__main__":
    main()
