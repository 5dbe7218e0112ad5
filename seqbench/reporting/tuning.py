"""What tuning studies spent and chose: the budget table, the chosen hyper-parameters, the
validation-per-trial figure (``seqbench tune`` and ``compare --tune`` alike).

A study is a :class:`seqbench.tuning.studies.Study` with its trial table. Everything here reads
the trial table's validation values only; test metrics are never looked at.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from seqbench.colors import loss_colors
from seqbench.reporting.figures import file_slug, save_figure
from seqbench.reporting.render import fmt_seconds
from seqbench.reporting.runs import dataset_display, model_display

if TYPE_CHECKING:
    from seqbench.tuning.studies import Study

Studies = Sequence[tuple["Study", pd.DataFrame]]
CELL = ["dataset", "model", "loss"]


def budget_table(studies: Studies) -> pd.DataFrame:
    """Per study what the search spent, so a reader sees the budget was equal."""
    rows = []
    for study, trials in studies:
        unique = trials.drop_duplicates("run_id")  # a config proposed twice was trained once
        max_epochs = study.max_epochs
        rows.append({
            "dataset": study.dataset, "model": study.model, "loss": study.loss, "trials": len(trials),
            "completed": int((trials["state"] == "completed").sum()), "pruned": int((trials["state"] == "pruned").sum()),
            "failed": int((trials["state"] == "failed").sum()), "max_epochs": max_epochs,
            "budget_epochs": len(trials) * max_epochs, "epochs_trained": int(unique["epochs_run"].sum()),
            "train_seconds": float(unique["train_seconds"].sum()), "wall_seconds": float(trials["wall_seconds"].sum()),
        })
    frame = pd.DataFrame(rows)
    frame.attrs.update({
        "title": "Tuning budget per loss (trials x max epochs; wall time on this machine)",
        "stub": CELL,
        "formats": {"train_seconds": "seconds", "wall_seconds": "seconds"},
        "headers": {"budget_epochs": "trials x max epochs", "epochs_trained": "epochs trained"},
        "notes": budget_notes(frame),
    })
    return frame


def budget_notes(budget: pd.DataFrame) -> list[str]:
    """One sentence per (data set, model): was every loss given the same trials and max epochs?"""
    notes: list[str] = []
    if budget.empty:
        return notes
    for (dataset, model), group in budget.groupby(["dataset", "model"], sort=True):
        where = f"{model_display(model)} on {dataset_display(dataset)}"
        spent = ", ".join(f"{row.loss} {fmt_seconds(row.wall_seconds)} ({row.pruned} pruned)" for row in group.itertuples())
        if group["trials"].nunique() == 1 and group["max_epochs"].nunique() == 1:
            trials, epochs = int(group["trials"].iloc[0]), int(group["max_epochs"].iloc[0])
            notes.append(f"{where}: equal budget, every loss {trials} trials x {epochs} max epochs = {trials * epochs} epochs "
                         f"at most; wall time {spent}.")
        else:
            shares = ", ".join(f"{row.loss} {row.trials} x {row.max_epochs}" for row in group.itertuples())
            notes.append(f"{where}: UNEQUAL budget ({shares} trials x max epochs): rerun with the same --tune for every loss.")
    return notes


def chosen_table(studies: Studies) -> pd.DataFrame:
    """Per study the best trial, its validation value and the chosen hyper-parameters (one column each)."""
    rows = []
    for study, trials in studies:
        best = study.best(trials)
        metric = study.settings.metric
        rows.append({"dataset": study.dataset, "model": study.model, "loss": study.loss, "best_trial": int(best["number"]),
                     f"valid_{metric}": float(best["value"])} | json.loads(best["params_json"]))
    frame = pd.DataFrame(rows)
    params = [c for c in frame.columns if c not in (*CELL, "best_trial") and not c.startswith("valid_")]
    frame.attrs.update({
        "title": "Chosen hyper-parameters per loss (the completed trial with the best validation value)",
        "stub": CELL,
        "formats": {column: "sig" for column in params},
        "notes": ["Selection reads validation metrics only; '-' = not a parameter of that loss or model, "
                  "or fixed with --set."],
    })
    return frame


def trials_figure(studies: Studies, stem: Path, title: str = "") -> list[Path]:
    """Validation metric versus trial number, one colour per loss; hollow markers = pruned trials,
    the line = best completed trial so far."""
    from matplotlib.figure import Figure  # lazy: matplotlib (figures only)
    from matplotlib.lines import Line2D  # lazy: matplotlib (figures only)
    from matplotlib.ticker import MaxNLocator  # lazy: matplotlib (figures only)

    colors = loss_colors([study.loss for study, _ in studies])
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = figure.subplots()
    metric = studies[0][0].settings.metric if studies else "NDCG@10"
    for study, trials in studies:
        color = colors[study.loss]
        done = trials[trials["state"] == "completed"]
        pruned = trials[trials["state"] == "pruned"]
        ax.scatter(done["number"], done["value"], color=color, zorder=3)
        ax.scatter(pruned["number"], pruned["value"], facecolors="none", edgecolors=color, zorder=3)
        running = trials["value"].where(trials["state"] == "completed").cummax().ffill()
        ax.step(trials["number"], running, where="post", color=color, alpha=0.7)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric} (best epoch)")
    ax.set_title(title or f"validation {metric} per trial")
    handles = [Line2D([], [], color=color, marker="o", label=label) for label, color in colors.items()]
    handles.append(Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="", label="pruned"))
    handles.append(Line2D([], [], color="grey", label="best completed so far"))
    ax.legend(handles=handles, loc="best")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return save_figure(figure, stem)


def cell_figures(studies: Studies, directory: Path) -> list[Path]:
    """One validation-per-trial figure per (data set, model), every loss of that cell in it."""
    groups: dict[tuple[str, str], list[tuple[Study, pd.DataFrame]]] = {}
    for study, trials in studies:
        groups.setdefault((study.dataset, study.model), []).append((study, trials))
    paths: list[Path] = []
    for (dataset, model), members in sorted(groups.items()):
        title = f"{dataset_display(dataset)} / {model_display(model)}: validation per trial"
        paths += trials_figure(members, Path(directory) / f"tune_{file_slug(dataset)}_{file_slug(model)}", title)
    return paths


__all__ = ["budget_notes", "budget_table", "cell_figures", "chosen_table", "trials_figure"]
