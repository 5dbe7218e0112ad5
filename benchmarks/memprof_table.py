"""Print issue 7's tables: peak memory per loss x catalog at L = 50 and L = 200, and the analytic check.

    python benchmarks/memprof_table.py            # auto mode (measures what fits, predicts the rest)
    python benchmarks/memprof_table.py --predict  # predicted only (a few minutes on 2 CPU cores)

The analytic check measures dense ``cce`` for real at three catalog sizes and compares the
growth of the peak with the formula of ``seqbench.memprof.analytic``.
"""

from __future__ import annotations

import argparse

from seqbench.memprof.analytic import DenseLogits
from seqbench.memprof.profile import ProfileRecord, default_registries, profile_step
from seqbench.memprof.report import baseline_ratio, human_bytes, peak_table

LOSSES = ["ce", "cce", "cce[chunked]", "sce", "sampled-ce", "bce", "gbce"]
CATALOGS = [10**4, 10**5, 10**6]


def loss_table(max_len: int, mode: str) -> list[ProfileRecord]:
    registries = default_registries()
    return [
        profile_step("sasrec", loss, catalog, 256, max_len, 64, mode, "cpu", registries=registries)
        for catalog in CATALOGS
        for loss in LOSSES
    ]


def ratios_at_largest(records: list[ProfileRecord]) -> str:
    largest = [record for record in records if record.catalog == CATALOGS[-1]]
    parts = []
    for label in ("cce[chunked]", "sce"):
        record = next(r for r in largest if r.loss == label)
        ratio = baseline_ratio(record, largest)
        parts.append(f"dense cce / {label} = {ratio:.1f}x")
    return ", ".join(parts)


def analytic_check(batch: int = 32, max_len: int = 50, hidden: int = 64) -> str:
    catalogs = [2000, 4000, 8000]
    peaks = {n: profile_step("sasrec", "cce", n, batch, max_len, hidden, "measure", "cpu").peak_bytes for n in catalogs}
    model = DenseLogits(batch, max_len, hidden)
    lines = [f"dense cce, SASRec, B={batch}, L={max_len}, d={hidden}, measured on CPU:"]
    for catalog in catalogs:
        lines.append(f"  N={catalog:>5}: peak {peaks[catalog]:>12,} B ({human_bytes(peaks[catalog])})")
    for small, large in zip(catalogs, catalogs[1:]):
        measured = peaks[large] - peaks[small]
        expected = model.peak_difference(small, large)
        lines.append(
            f"  N {small}->{large}: measured +{measured:,} B, formula +{expected:,} B "
            f"({measured / expected:.4f} of the formula)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predict", action="store_true", help="predicted mode only")
    parser.add_argument("--skip-check", action="store_true", help="skip the measured analytic check")
    args = parser.parse_args()
    mode = "predict" if args.predict else "auto"
    for max_len in (50, 200):
        records = loss_table(max_len, mode)
        print(f"\nSASRec, B=256, L={max_len}, d=64, one training step ({mode})")
        print(peak_table(records))
        print(ratios_at_largest(records))
    if not args.skip_check:
        print()
        print(analytic_check())


if __name__ == "__main__":
    main()
