"""Text tables and the log-log plot of memprof records."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from seqbench.memprof.profile import ProfileRecord

BASELINE = "cce"  # dense cumulative CE: the loss every ratio is taken against


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            # Three significant digits without falling into exponent notation (1020 MiB, not 1.02e+03).
            decimals = 0 if unit == "B" or abs(size) >= 100 else (1 if abs(size) >= 10 else 2)
            return f"{size:.{decimals}f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _cell(record: ProfileRecord) -> str:
    if record.status == "OOM":
        return "OOM"
    if record.peak_bytes is None:
        return "error"
    return human_bytes(record.peak_bytes)


def baseline_ratio(record: ProfileRecord, records: list[ProfileRecord]) -> float | None:
    """Dense cce's peak divided by this record's peak at the same catalog (how many times less)."""
    for other in records:
        if other.loss == BASELINE and other.catalog == record.catalog and other.peak_bytes:
            return other.peak_bytes / record.peak_bytes if record.peak_bytes else None
    return None


def peak_table(records: list[ProfileRecord]) -> str:
    rows = []
    for record in records:
        ratio = baseline_ratio(record, records)
        rows.append(
            [
                f"{record.catalog:,}",
                record.loss,
                _cell(record),
                "-" if ratio is None else f"{ratio:.3g}x",
                record.mode,
                "-" if record.seconds is None else f"{record.seconds:.3g}",
                "-" if record.flops is None else f"{record.flops / 1e9:.4g}",
                record.note,
            ]
        )
    headers = ["catalog", "loss", "peak", "dense cce / this", "mode", "s/step", "GFLOP/step", "note"]
    return tabulate(rows, headers=headers, disable_numparse=True)


def stage_table(record: ProfileRecord) -> str:
    rows = [
        [stage.name, human_bytes(stage.held_bytes), human_bytes(stage.transient_bytes), human_bytes(stage.peak_bytes)]
        for stage in record.stages
    ]
    title = f"{record.loss} @ catalog {record.catalog:,} ({record.mode}, {record.device})"
    table = tabulate(rows, headers=["stage", "held", "transient", "live peak"], disable_numparse=True)
    return f"{title}\n{table}"


def plot_peaks(records: list[ProfileRecord], path: Path) -> None:
    """Peak memory versus catalog, log-log, one line per loss; hollow markers are predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for loss in dict.fromkeys(record.loss for record in records):
        points = sorted((r.catalog, r.peak_bytes, r.mode) for r in records if r.loss == loss and r.peak_bytes)
        if not points:
            continue
        line = axes.plot([p[0] for p in points], [p[1] for p in points], label=loss)[0]
        for catalog, peak, mode in points:
            face = line.get_color() if mode == "measured" else "none"
            axes.plot(catalog, peak, "o", color=line.get_color(), markerfacecolor=face)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("catalog size N (items)")
    axes.set_ylabel("peak memory of one training step (bytes)")
    first = records[0]
    axes.set_title(f"{first.model}, B={first.batch_size}, L={first.max_len}, d={first.hidden} (hollow = predicted)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
