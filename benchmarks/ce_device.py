"""Exact softmax CE implementations on one device: time of forward + backward and peak memory.

    python benchmarks/ce_device.py --device cuda --rows 12800 --catalogs 1e5,1e6 [--bf16]

Implementations: ``dense`` (the n x N logits), ``chunked`` (seqbench's tiles; on CUDA sized by
free memory), ``torch-chunked`` (``torch.nn.functional.linear_cross_entropy`` with
``LinearCrossEntropyOptions``, where this torch has it) and ``cut`` (Apple's cut-cross-entropy,
CUDA only, where installed). Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA (reset per
implementation; the inputs and their gradients included) and not measured on CPU. Before timing,
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

from seqbench.losses.chunked_ce import DEFAULT_CHUNK, chunked_cross_entropy, dense_cross_entropy, tile_shape  # noqa: E402
from seqbench.losses.cross_entropy import cut_available  # noqa: E402

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def implementations(device: torch.device) -> dict[str, Loss]:
    found: dict[str, Loss] = {
        "chunked": lambda x, table, y: chunked_cross_entropy(x, table, None, y).mean(),
        "dense": lambda x, table, y: dense_cross_entropy(x, table, None, y).mean(),
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
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            value = loss(x, table, y)
        value.backward()
        _sync(device)
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return statistics.median(times[1:]), peak, value.detach().float(), x.grad.detach().float().clone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=int, default=12_800, help="loss positions n (B x L)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--catalogs", default="1e5,1e6")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="autocast the loss to bfloat16")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for catalog in (int(float(c)) for c in args.catalogs.split(",")):
        generator = torch.Generator(device=device).manual_seed(0)
        x = (torch.randn(args.rows, args.hidden, device=device, generator=generator) * 0.1).requires_grad_()
        table = (torch.randn(catalog + 1, args.hidden, device=device, generator=generator) * 0.1).requires_grad_()
        y = torch.randint(1, catalog + 1, (args.rows,), device=device, generator=generator)
        reference: tuple[torch.Tensor, torch.Tensor] | None = None
        tile = tile_shape(args.rows, catalog, DEFAULT_CHUNK, device)
        for name, loss in implementations(device).items():
            row = {"catalog": catalog, "impl": name, "rows x d": f"{args.rows} x {args.hidden}"}
            if name == "dense" and not fits_dense(args.rows, catalog, device):
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
        del x, table, y
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"{device.type}{' bf16' if args.bf16 else ''}, torch {torch.__version__}")
    print(tabulate(rows, headers="keys", tablefmt="github"))


if __name__ == "__main__":
    main()
