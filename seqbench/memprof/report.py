"""Text tables and the log-log plot of memprof records."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tabulate import tabulate

from seqbench.atomic import save_figure_atomically
from seqbench.colors import MARKERS, loss_color, variant_styles
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


# Operator names in prediction notes, in words a reader of the table knows.
OPERATOR_WORDS = {
    "index.Tensor": "a boolean-mask selection",
    "nonzero.default": "a search for non-zero entries",
    "masked_select.default": "a masked selection",
    "unique.default": "a de-duplication",
}
STAGE_LEGEND = (
    "held: memory a stage leaves allocated for later (live at its end minus live at its start); negative when "
    "the stage frees more than it allocates, e.g. the encoder backward releasing the activations the forward pass saved",
    "transient: the stage's own short-lived peak above what was live when it began (freed before it ends)",
    "live peak: the highest total of live tensors during the stage; the whole step's live peak is what a GPU must hold",
)


def shape_line(records: list[ProfileRecord]) -> str:
    """The step the table is about: model, B, L, d, device."""
    first = records[0]
    devices = ", ".join(dict.fromkeys(record.device for record in records))
    return (f"one training step of {first.model}: batch B = {first.batch_size} sequences, length L = {first.max_len}, "
            f"hidden size d = {first.hidden}, on {devices}")


def plain_note(note: str) -> str:
    """A prediction note without operator jargon."""
    def unknown_mask(match: re.Match[str]) -> str:
        operator = match.group(1)
        words = OPERATOR_WORDS.get(operator, f"a data-dependent operation ({operator})")
        return f"upper bound: {words} was assumed to keep every element"

    text = re.sub(r"upper bound: unknown mask in (\S+) taken as all true", unknown_mask, note)
    return text.replace("fake-tensor steps", "simulated steps (no memory allocated)")


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
                plain_note(record.note),
            ]
        )
    headers = ["catalog", "loss", "peak", "dense cce / this", "mode", "s/step", "GFLOP/step", "note"]
    if not records:
        return tabulate(rows, headers=headers, disable_numparse=True)
    return shape_line(records) + "\n\n" + tabulate(rows, headers=headers, disable_numparse=True)


def stage_table(record: ProfileRecord) -> str:
    rows = [
        [stage.name, human_bytes(stage.held_bytes), human_bytes(stage.transient_bytes), human_bytes(stage.peak_bytes)]
        for stage in record.stages
    ]
    title = f"{record.loss} @ catalog {record.catalog:,} ({record.mode}, {record.device})"
    table = tabulate(rows, headers=["stage", "held", "transient", "live peak"], disable_numparse=True)
    return f"{title}\n{table}"


def stage_legend() -> str:
    """What the per-stage columns mean (printed once below the --breakdown tables)."""
    return "\n".join(STAGE_LEGEND)


def plot_peaks(records: list[ProfileRecord], path: Path) -> Path:
    """Write :func:`peaks_figure` to ``path``; returns the path."""
    import matplotlib.pyplot as plt  # lazy: matplotlib (figures only)

    figure = peaks_figure(records)
    save_figure_atomically(figure, path, dpi=150, bbox_inches="tight")
    plt.close(figure)
    return path


def peaks_figure(records: list[ProfileRecord]) -> Any:
    """Peak memory versus catalog, log-log, one line per loss; hollow markers are predictions.

    Colours are the losses' colours of every seqbench figure; variants of a loss and lines that
    lie on top of each other stay apart through line style, marker and a small offset of the
    markers along the catalog axis.
    """
    import matplotlib  # lazy: matplotlib (figures only)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib (figures only)
    from matplotlib.ticker import FuncFormatter  # lazy: matplotlib (figures only)

    losses = list(dict.fromkeys(record.loss for record in records))
    styles = variant_styles(losses)
    peaks = [r.peak_bytes for r in records if r.peak_bytes]
    scale, unit = (2**30, "GiB") if peaks and max(peaks) >= 2**30 else (2**20, "MiB")
    figure, axes = plt.subplots(figsize=(8, 4.8))
    for index, loss in enumerate(losses):
        points = sorted((r.catalog, r.peak_bytes, r.mode) for r in records if r.loss == loss and r.peak_bytes)
        if not points:
            continue
        # Losses with equal peaks would hide one another: spread markers by a few percent in N.
        shift = 1 + 0.05 * (index - (len(losses) - 1) / 2)
        xs, ys = [p[0] * shift for p in points], [p[1] / scale for p in points]
        linestyle, marker = styles[loss][0], MARKERS[index % len(MARKERS)]
        color = loss_color(loss)
        axes.plot(xs, ys, color=color, linestyle=linestyle, linewidth=1.8, alpha=0.9, marker=marker,
                  markerfacecolor="none", markersize=7, label=loss)
        for x, y, (_, _, mode) in zip(xs, ys, points):
            if mode == "measured":
                axes.plot(x, y, marker, color=color, markersize=7)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.set_xlabel("catalog size N (items, log scale)")
    axes.set_ylabel(f"peak memory of one training step ({unit}, log scale)")
    first = records[0]
    axes.set_title(f"{first.model}, B={first.batch_size}, L={first.max_len}, d={first.hidden} (filled = measured, hollow = predicted)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(title="loss", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return figure
