"""Figures from stored runs, as PNG and PDF: the memory frontier, NDCG@10 versus training time
(figure 2 of the CCE paper) and per-timestamp NDCG@10 (figure 3).

Uses matplotlib's object-oriented API (``Figure`` without pyplot), so nothing depends on, or
changes, the global backend: files are rendered by the Agg/PDF canvases whatever the session has.
Every figure carries a title, axis labels with units and a legend, so it reads without the tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from seqbench.atomic import save_figure_atomically
from seqbench.colors import loss_color, loss_colors, variant_styles
from seqbench.reporting.frontier import NDCG_COLUMN, frontier_table
from seqbench.reporting.runs import (
    FRONTIER_METRIC,
    completed_runs,
    dataset_display,
    model_display,
)

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
GIB = 1024**3
MIB = 1024**2
PerTimestamp = Mapping[str, Sequence[Mapping[str, float]]]


class EpochsSource(Protocol):
    """What the figures need from a store: a run's per-evaluation table (``RunStore`` has it)."""

    def epochs(self, run_id: str) -> pd.DataFrame: ...


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        save_figure_atomically(figure, path, dpi=150, bbox_inches="tight")
    return paths


def _grid(count: int, width: float = 5.2, height: float = 4.0) -> tuple[Figure, list[Axes]]:
    cols = min(count, 3)
    rows = -(-count // cols)
    figure = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes[:count]


def _plain(value: float, _position: int) -> str:
    return f"{value:g}"


def _plain_minor(value: float, position: int) -> str:
    # Label only 2x and 5x of each decade: all nine minor ticks collide near the decade.
    mantissa = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
    return _plain(value, position) if round(mantissa) in (2, 5) else ""


def file_slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


# --- the frontier -------------------------------------------------------------------------------
def frontier_figure(table: pd.DataFrame, stem: Path) -> list[Path]:
    """Scatter of peak memory (log x) against test NDCG@10, one panel per data set, colour per
    loss, marker per model; frontier points ringed and joined by a step line."""
    points = table[table["peak_memory_bytes"] > 0]  # a zero (unmeasured) memory has no log position
    if points.empty:
        return []
    scale, unit = (GIB, "GiB") if points["peak_memory_bytes"].max() >= GIB else (MIB, "MiB")
    colors = loss_colors(points["loss"])
    markers = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(sorted(points["model"].unique()))}
    datasets = sorted(points["dataset"].unique())
    figure, axes = _grid(len(datasets))
    for ax, dataset in zip(axes, datasets):
        mine = points[points["dataset"] == dataset]
        for (loss, model), group in mine.groupby(["loss", "model"]):
            ax.scatter(group["peak_memory_bytes"] / scale, group[NDCG_COLUMN], color=colors[loss],
                       marker=markers[model], s=55, alpha=0.85, zorder=3)
        front = mine[mine["on_frontier"]].sort_values("peak_memory_bytes")
        ax.step(front["peak_memory_bytes"] / scale, front[NDCG_COLUMN], where="post", color="black",
                linestyle="--", linewidth=1.2, zorder=2)
        ax.scatter(front["peak_memory_bytes"] / scale, front[NDCG_COLUMN], facecolors="none",
                   edgecolors="black", s=160, linewidths=1.2, zorder=4)
        ax.set_xscale("log")
        # Plain numbers read better than 6x10^1 for memory that spans only a decade or two.
        ax.xaxis.set_major_formatter(FuncFormatter(_plain))
        ax.xaxis.set_minor_formatter(FuncFormatter(_plain_minor))
        ax.set_title(dataset_display(dataset))
        ax.set_xlabel(f"peak training memory ({unit}, log scale)")
        ax.set_ylabel(f"test {FRONTIER_METRIC}")
        ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=color, marker="o", linestyle="", label=label) for label, color in colors.items()]
    handles += [Line2D([], [], color="grey", marker=markers[m], linestyle="", label=model_display(m)) for m in markers]
    handles.append(Line2D([], [], color="black", linestyle="--", marker="o", markerfacecolor="none", label="Pareto frontier"))
    figure.legend(handles=handles, loc="outside right center", title="loss / model")  # clear of the title
    figure.suptitle(f"Test {FRONTIER_METRIC} versus peak training memory (one point per run)")
    return save_figure(figure, stem)


# --- NDCG@10 versus training time -----------------------------------------------------------------
def _curve(epochs: pd.DataFrame, column: str) -> pd.DataFrame:
    if epochs.empty or column not in epochs.columns or "train_seconds" not in epochs.columns:
        return pd.DataFrame()
    return epochs[["train_seconds", column]].dropna().sort_values("train_seconds")


def _curve_column(curves: Sequence[pd.DataFrame]) -> str:
    # The trainer may store test NDCG@10 per evaluation; if not, validation is the honest stand-in.
    return NDCG_COLUMN if curves and all(_curve(c, NDCG_COLUMN).shape[0] for c in curves) else "valid_NDCG@10"


def time_figure(runs: pd.DataFrame, epochs: Mapping[str, pd.DataFrame], dataset: str, stem: Path,
                colors: Mapping[str, str]) -> list[Path]:
    """NDCG@10 after each evaluation against cumulative training seconds: one panel per model,
    one line per run, colour per loss (seeds of a loss share the colour and one legend entry)."""
    mine = runs[runs["dataset"] == dataset]
    column = _curve_column([epochs[r] for r in mine["run_id"]])
    models = [m for m in sorted(mine["model"].unique())
              if any(_curve(epochs[r], column).shape[0] for r in mine.loc[mine["model"] == m, "run_id"])]
    if not models:
        return []
    figure, axes = _grid(len(models))
    shown: set[str] = set()
    styles = variant_styles(mine["label"].tolist())
    for ax, model in zip(axes, models):
        for _, run in mine[mine["model"] == model].sort_values(["label", "seed"]).iterrows():
            curve = _curve(epochs[run["run_id"]], column)
            if curve.empty:
                continue
            legend = run["label"] if run["label"] not in shown else "_nolegend_"
            shown.add(run["label"])
            ax.plot(curve["train_seconds"], curve[column], marker="o", markersize=3, color=colors[run["label"]],
                    linestyle=styles[run["label"]][0], label=legend)
        ax.set_title(model_display(model))
        ax.set_xlabel("training wall-clock (seconds, evaluation excluded)")
        ax.set_ylabel(f"{'test' if column == NDCG_COLUMN else 'validation'} NDCG@10")
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colors[label], marker="o", linestyle=styles[label][0], label=label) for label in sorted(shown)]
    figure.legend(handles=handles, loc="outside right upper", title="loss")
    figure.suptitle(f"{dataset_display(dataset)}: NDCG@10 versus training time (one line per run)")
    return save_figure(figure, stem)


# --- per-timestamp NDCG ---------------------------------------------------------------------------
def _series_keys(keys: Sequence[str], runs: pd.DataFrame | None) -> dict[str, tuple[str, str, str]]:
    """(dataset, model, loss label) of each per-timestamp series.

    A key is a run id of ``runs`` (what ``compare --plots`` passes), a ``dataset/model/loss/seedN``
    label, or any other label (then drawn as its own loss).
    """
    known: dict[str, tuple[str, str, str]] = {}
    if runs is not None and not runs.empty:
        labels = runs["label"] if "label" in runs.columns else runs["loss"]
        known = {r: (d, m, str(label)) for r, d, m, label in zip(runs["run_id"], runs["dataset"], runs["model"], labels)}
    meta = {}
    for key in keys:
        parts = key.split("/")
        meta[key] = known.get(key) or ((parts[0], parts[1], parts[2]) if len(parts) >= 3 else ("", "", key))
    return meta


def per_timestamp_figure(per_timestamp: PerTimestamp, stem: Path, title: str = "", runs: pd.DataFrame | None = None,
                         split: str = "test") -> list[Path]:
    """NDCG@k of predicting position t+1 from the prefix ending at t: one panel per data set and
    model, one line per run, colour per loss (seeds of a loss share colour and legend entry).

    ``per_timestamp`` maps a run id of ``runs`` (or a label) to records ``{"position": t,
    "NDCG@10": v}`` as ``evaluate_stored(..., per_timestamp=True)`` returns them.
    """
    series = {key: pd.DataFrame(list(records)) for key, records in per_timestamp.items() if records}
    series = {key: frame for key, frame in series.items() if "position" in frame.columns}
    if not series:
        return []
    meta = _series_keys(list(series), runs)
    panels = sorted({(dataset, model) for dataset, model, _ in meta.values()})
    figure, axes = _grid(len(panels), width=5.6, height=4.0)
    styles = variant_styles([label for _, _, label in meta.values()])
    metric, shown = "NDCG@10", {}
    for ax, (dataset, model) in zip(axes, panels):
        for key in sorted((k for k, m in meta.items() if m[:2] == (dataset, model)), key=lambda k: meta[k][2]):
            label = meta[key][2]
            frame = series[key].sort_values("position")
            metric = next((c for c in frame.columns if c.startswith("NDCG@")), metric)
            ax.plot(frame["position"], frame[metric], color=loss_color(label), linestyle=styles[label][0], marker=".")
            shown[label] = styles[label][0]
        ax.set_title(" / ".join(filter(None, [dataset_display(dataset) if dataset else "", model_display(model) if model else ""])))
        ax.set_xlabel("position t in the input sequence (items seen)")
        ax.set_ylabel(f"{split} {metric} of predicting item t+1")
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=loss_color(label), linestyle=style, marker=".", label=label) for label, style in sorted(shown.items())]
    figure.legend(handles=handles, loc="outside right upper", title="loss")
    names = ", ".join(dict.fromkeys(dataset_display(d) for d, _ in panels if d)) or "stored runs"
    figure.suptitle(title or f"{names}, {split} split: {metric} per position t (figure 3 of the CCE paper)")
    return save_figure(figure, stem)


def write_figures(store: EpochsSource, runs: pd.DataFrame, plots_dir: Path, per_timestamp: PerTimestamp | None = None,
                  split: str = "test") -> list[Path]:
    """Write every figure the stored runs allow into ``plots_dir`` (PNG and PDF) and return paths.

    ``store`` is a :class:`RunStore` (for the per-evaluation tables), ``runs`` its (filtered) run
    table, ``per_timestamp`` an optional {run_id (or label): records} of ``split`` for figure 3. Files: ``frontier``,
    ``ndcg_vs_time_<dataset>``, ``per_timestamp``. Raises InputError when there is no completed run.
    """
    plots_dir = Path(plots_dir)
    done = completed_runs(runs)
    paths = frontier_figure(frontier_table(runs), plots_dir / "frontier")
    epochs = {run_id: _read_epochs(store, run_id) for run_id in done["run_id"]}
    colors = loss_colors(done["label"])
    for dataset in sorted(done["dataset"].unique()):
        paths += time_figure(done, epochs, dataset, plots_dir / f"ndcg_vs_time_{file_slug(dataset)}", colors)
    if per_timestamp:
        paths += per_timestamp_figure(per_timestamp, plots_dir / "per_timestamp", runs=done, split=split)
    return paths


def _read_epochs(store: EpochsSource, run_id: str) -> pd.DataFrame:
    try:
        return store.epochs(run_id)
    except OSError:  # a run without an epochs table simply has no curve
        return pd.DataFrame()


__all__ = ["frontier_figure", "per_timestamp_figure", "time_figure", "write_figures"]
