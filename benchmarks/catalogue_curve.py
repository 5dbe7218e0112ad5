"""Peak memory and time of one training step against catalogue size, per loss: measured points,
predicted lines, one figure.

    python benchmarks/catalogue_curve.py --catalogs 1e4,3e4,1e5,3e5,1e6 \\
        --losses "sce,cce[chunked],cce[fused],cce[torch],cce[dense],sampled-ce,bce" \\
        --batch-size 64 --max-len 50 --threads 1 --plot docs/figures/catalogue_curve.png [--json]

Each cell is ``seqbench memprof``'s step (SASRec, Adam, full windows): *predicted* on fake tensors
for every cell (so 10^6 items cost seconds), *measured* for real (CPU allocation tracker, one
step's wall seconds) where the prediction fits in half the free memory and the step's FLOPs stay
under ``--max-flops``. ``cce[torch]`` is torch's own chunked ``F.linear_cross_entropy`` and
``cce[dense]`` the n x N logits: both on the same axes as seqbench's chunked and fused CE. The
FLOP floor column is the step's FLOPs over the rate of the fastest of the loss's three GEMM shapes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import matmul_rate  # noqa: E402

from seqbench.losses.spec import split_loss_list  # noqa: E402
from seqbench.memprof.profile import available_bytes, profile_step  # noqa: E402

GIB = 2**30


def cell(loss: str, catalog: int, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    predicted = profile_step("sasrec", loss, catalog, args.batch_size, args.max_len, args.hidden, mode="predict")
    row: dict[str, Any] = {"loss": loss, "catalog": catalog, "predicted GiB": predicted.peak_bytes and predicted.peak_bytes / GIB,
                           "GFLOP/step": predicted.flops and predicted.flops / 1e9}
    row["floor s/step"] = predicted.flops / rate if predicted.flops else None
    fits = predicted.peak_bytes is not None and predicted.peak_bytes <= available_bytes("cpu")
    if fits and (predicted.flops or 0) <= args.max_flops:
        measured = profile_step("sasrec", loss, catalog, args.batch_size, args.max_len, args.hidden, mode="measure", device="cpu")
        row |= {"measured GiB": measured.peak_bytes / GIB if measured.peak_bytes else None, "s/step": measured.seconds}
        if measured.peak_bytes and predicted.peak_bytes:
            row["measured : predicted"] = measured.peak_bytes / predicted.peak_bytes
    else:
        row["note"] = "predicted only: " + ("does not fit in half the free memory" if not fits else f"over {args.max_flops:.0e} FLOPs")
    return row


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from seqbench.atomic import save_figure_atomically

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    memory, time = figure.subplots(1, 2)
    for index, loss in enumerate(dict.fromkeys(row["loss"] for row in rows)):
        color = f"C{index}"
        mine = [row for row in rows if row["loss"] == loss]
        memory.plot([r["catalog"] for r in mine], [r["predicted GiB"] for r in mine], "-", color=color, label=f"{loss} predicted")
        shown = [r for r in mine if r.get("measured GiB")]
        memory.plot([r["catalog"] for r in shown], [r["measured GiB"] for r in shown], "o", color=color)
        timed = [r for r in mine if r.get("s/step")]
        time.plot([r["catalog"] for r in timed], [r["s/step"] for r in timed], "o-", color=color, label=loss)
        time.plot([r["catalog"] for r in mine], [r["floor s/step"] for r in mine], ":", color=color)
    memory.set(xscale="log", yscale="log", xlabel="catalogue size N (items)", ylabel="peak GiB of one step",
               title="peak memory: lines predicted, dots measured")
    time.set(xscale="log", yscale="log", xlabel="catalogue size N (items)", ylabel="seconds per step",
             title="time: dots measured, dotted the FLOP floor")
    memory.legend(fontsize=7)
    time.legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    save_figure_atomically(figure, path, dpi=150)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogs", default="1e4,3e4,1e5,3e5,1e6")
    parser.add_argument("--losses", default="sce,cce[chunked],cce[fused],cce[torch],cce[dense],sampled-ce,bce")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-flops", type=float, default=2e12, help="measure only steps under this many FLOPs")
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows_per_step, cpu = args.batch_size * args.max_len, torch.device("cpu")
    # The fastest of the exact CE's three GEMM shapes (logits, d hidden, d table): a floor, not an estimate.
    rate = max(matmul_rate(rows_per_step, args.hidden, 2**15, cpu), matmul_rate(rows_per_step, 2**15, args.hidden, cpu),
               matmul_rate(2**15, rows_per_step, args.hidden, cpu))
    rows = []
    for catalog in args.catalogs.split(","):
        for loss in split_loss_list(args.losses):
            rows.append(cell(loss, int(float(catalog)), args, rate))
            # Progress on stderr: a long curve can be followed (and salvaged) before the table is printed.
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    title = (f"SASRec step, batch {args.batch_size} x {args.max_len}, d {args.hidden}, cpu, {args.threads} thread(s), "
             f"GEMM {rate / 1e9:.1f} GFLOP/s")
    if args.plot:
        plot(rows, args.plot, title)
    if args.json:
        print(json.dumps({"settings": title, "rows": rows}, indent=2))
        return
    print(title)
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3g"))


if __name__ == "__main__":
    main()
