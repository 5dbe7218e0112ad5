"""Forward+backward time and tracked peak memory of one loss step, for every loss and catalogue size.

    python benchmarks/losses.py                              # B=256, L=50, d=64; catalogues 1e4, 1e5, 1e6
    python benchmarks/losses.py --catalogs 1e5 --losses "cce[dense],cce[chunked],sce" --repeats 5 --json

Shapes are SASRec-like: every one of the B x L positions carries a target (n = B L for
all-timestamp losses, n = B for last-timestamp ones). Memory is the peak of live tensor bytes
during the step measured by ``AllocationTracker`` (hidden states, item table, gradients and every
intermediate; process RSS is not used). Time is the median (and min) wall time of
forward + backward over ``--repeats`` runs after the tracked run (which warms up), without the tracker.
A dense cross-entropy whose n x N logits would not fit is skipped with the reason, not run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqbench.losses.base import LossBatch  # noqa: E402
from seqbench.losses.registry import LOSSES, build_loss  # noqa: E402
from seqbench.losses.spec import parse_loss_spec, split_loss_list  # noqa: E402
from seqbench.measure.allocations import AllocationTracker  # noqa: E402

# Loss-spec syntax (seqbench/losses/spec.py), as memprof: cce[chunked] = cce with ce_impl=chunked.
CE_VARIANTS = ["ce[dense]", "ce[chunked]", "cce[dense]", "cce[chunked]"]
DENSE_BASELINE = "cce[dense]"
DEFAULT_LOSSES = CE_VARIANTS + [name for name in LOSSES.names() if name not in ("ce", "cce")]


@dataclass
class Result:
    loss: str
    catalog: int
    positions: int
    time_s: float | None
    time_min_s: float | None
    peak_mib: float | None
    note: str = ""


def parse_loss(spec: str) -> tuple[str, dict[str, object]]:
    """'cce[chunked]' -> ('cce', {'ce_impl': 'chunked'}); 'sce' -> ('sce', {}); a bare cce is dense."""
    parsed = parse_loss_spec(spec)
    return parsed.name, dict(parsed.params)


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 8 * 2**30


def dense_logits_bytes(loss: torch.nn.Module, rows: int, catalog: int) -> int:
    """What a dense full softmax keeps alive at its peak: logits, log-probabilities, their gradient."""
    uses_dense = getattr(loss, "implementation", None)
    if uses_dense is None or loss.implementation(rows) != "dense":
        return 0
    return 3 * rows * catalog * 4


def make_batch(args: argparse.Namespace, catalog: int, seed: int) -> LossBatch:
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(args.batch, args.max_len, args.dim, generator=g) * 0.1).requires_grad_()
    table = (torch.randn(catalog + 1, args.dim, generator=g) * 0.02).requires_grad_()
    positives = torch.randint(1, catalog + 1, (args.batch, args.max_len), generator=g)
    history = torch.randint(1, catalog + 1, (args.batch, args.max_len), generator=g)
    return LossBatch(hidden, positives, table, None, history, torch.Generator().manual_seed(seed + 1))


def step(loss: torch.nn.Module, batch: LossBatch) -> None:
    loss(batch).value.backward()


def measure(args: argparse.Namespace, spec: str, catalog: int) -> Result:
    name, params = parse_loss(spec)
    loss = build_loss(name, catalog, {**params, **dict(args.set)})
    rows = args.batch * (args.max_len if loss.positions == "all" else 1)
    need = dense_logits_bytes(loss, rows, catalog)
    limit = args.memory_limit_gib * 2**30 if args.memory_limit_gib else 0.85 * available_bytes()
    if need > limit:
        reason = f"skipped: dense logits need ~{need / 2**30:.0f} GiB > {limit / 2**30:.0f} GiB available"
        return Result(spec, catalog, rows, None, None, None, reason)
    tracker = AllocationTracker()
    with tracker:  # the step's tensors are created inside, so inputs and gradients count too
        step(loss, make_batch(args, catalog, 0))  # also the warm-up of the timed runs
    peak = tracker.peak_bytes / 2**20
    times = []
    for repeat in range(1, args.repeats + 1):
        batch = make_batch(args, catalog, repeat)
        start = time.perf_counter()
        step(loss, batch)
        times.append(time.perf_counter() - start)
        del batch
    return Result(spec, catalog, rows, statistics.median(times), min(times), peak)


def parse_set(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key, value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogs", default="1e4,1e5,1e6", help="comma-separated catalogue sizes N")
    parser.add_argument("--losses", default=",".join(DEFAULT_LOSSES), help="loss specs: NAME, cce[chunked], NAME[key=value;...]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--memory-limit-gib", type=float, default=0.0, help="skip dense CE above this (0 = 85%% of MemAvailable)")
    parser.add_argument("--set", action="append", type=parse_set, default=[], help="KEY=VALUE passed to every loss that has KEY")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--render", nargs="+", metavar="JSON", help="only print the table of saved --json outputs")
    args = parser.parse_args(argv)
    if args.render:
        print(render_files(args.render))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    catalogs = [int(float(value)) for value in args.catalogs.split(",")]
    results = []
    for catalog in catalogs:
        for spec in split_loss_list(args.losses):
            name = parse_loss(spec)[0]
            args_for_loss = argparse.Namespace(**vars(args))
            known = set(build_loss(name, catalog).params.__dataclass_fields__)
            args_for_loss.set = [(k, v) for k, v in args.set if k in known]
            result = measure(args_for_loss, spec, catalog)
            results.append(result)
            print(f"{spec:>12} N={catalog:>8}: {result.time_s} s, {result.peak_mib} MiB {result.note}", file=sys.stderr, flush=True)
    if args.json:
        config = {"batch": args.batch, "max_len": args.max_len, "dim": args.dim, "threads": torch.get_num_threads()}
        print(json.dumps({"config": config, "results": [asdict(r) for r in results]}, indent=2))
        return
    print(render(results))


def catalog_label(catalog: int) -> str:
    """1e+05 style labels stay strings in the table: 100000 -> '1e5'."""
    power = len(str(catalog)) - 1
    return f"1e{power}" if catalog == 10**power else str(catalog)


def render(results: list[Result]) -> str:
    """The table, with each loss's peak memory also as a share of dense ``cce`` at the same N."""
    dense = {r.catalog: r.peak_mib for r in results if r.loss == DENSE_BASELINE and r.peak_mib}
    rows = []
    for r in results:
        share = f"{r.peak_mib / dense[r.catalog]:.3f}" if r.peak_mib and r.catalog in dense else ""
        rows.append([
            r.loss, catalog_label(r.catalog), r.positions,
            "" if r.time_s is None else f"{r.time_s:.3f}", "" if r.time_min_s is None else f"{r.time_min_s:.3f}",
            "" if r.peak_mib is None else f"{r.peak_mib:,.0f}", share, r.note,
        ])
    headers = ["loss", "N", "n", "time s (median)", "time s (min)", "peak MiB", "/ dense cce", "note"]
    return tabulate(rows, headers=headers, disable_numparse=True)


def render_files(paths: list[str]) -> str:
    """Render the table of one or more saved ``--json`` outputs."""
    results = [Result(**row) for path in paths for row in json.loads(Path(path).read_text())["results"]]
    for result in results:  # outputs saved before the loss-spec syntax wrote cce:dense
        name, colon, impl = result.loss.partition(":")
        result.loss = f"{name}[{impl}]" if colon else result.loss
    return render(results)


if __name__ == "__main__":
    main()
