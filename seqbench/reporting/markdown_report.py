"""``compare --report DIR``: one self-contained Markdown file with every table, the verdicts and the
figures (relative links into ``DIR/figures/``), for committing or pasting into a paper's appendix."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pandas as pd

import seqbench
from seqbench.atomic import atomic_file
from seqbench.reporting.render import render
from seqbench.reporting.stats import ADJUSTMENT_NAMES
from seqbench.reporting.study import HEADINGS, StudyRequest, StudyTables

REPORT_NAME = "report.md"


def write_report(directory: Path, study: StudyTables, request: StudyRequest, figures: list[Path]) -> Path:
    """Write ``directory/report.md`` atomically (figures are already in ``directory/figures``)."""
    directory.mkdir(parents=True, exist_ok=True)
    text = "\n".join(_sections(directory, study, request, figures)) + "\n"
    with atomic_file(directory / REPORT_NAME) as tmp:  # a full disk leaves no half report, nor a stray temp file
        tmp.write_text(text, encoding="utf-8")
    return directory / REPORT_NAME


def _sections(directory: Path, study: StudyTables, request: StudyRequest, figures: list[Path]) -> list[str]:
    lines = ["# seqbench comparison report", "",
             f"Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} by seqbench "
             f"{seqbench.__version__}: `{' '.join(shlex.quote(a) for a in ['seqbench', *sys.argv[1:]])}`", "",
             f"Runs: {len(study.completed)} completed of {len(study.runs)} selected ({request.selection} selection). "
             f"Test: {request.test}; p-values adjusted per table by {ADJUSTMENT_NAMES[request.adjustment]}; "
             f"alpha {request.alpha:g}.", ""]
    lines += ["## Protocol", "", _protocol_table(request), ""]
    if request.tuning is not None:  # compare --tune: the table above is the default setting's protocol
        lines += [f"The **tuned** setting is this protocol with each loss's chosen hyper-parameters (best of "
                  f"{request.tuning.trials} trials per loss by validation NDCG@10, retrained with the grid's seeds): "
                  "see *Chosen hyper-parameters* and *Tuning budget per loss*.", ""]
    lines += [f"> {note}" for note in study.notes] + ([""] if study.notes else [])
    for name, value in study.tables.items():
        lines += [f"## {HEADINGS.get(name, name)}", ""]
        if getattr(value, "empty", False):
            lines += [" ".join(value.attrs.get("notes", [])), ""]
            continue
        lines += [render(value, "markdown"), ""]
        if name == "grid" and study.verdicts:
            lines += ["### Verdicts", "", study.verdict_heading, "", *[f"- {line}" for line in study.verdicts], ""]
    tuning = request.tuning.figures if request.tuning is not None else []  # compare --tune: validation per trial
    pictures = [p for p in [*figures, *tuning] if p.suffix == ".png" and directory.resolve() in p.resolve().parents]
    if pictures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({p.relative_to(directory).as_posix()})" for p in pictures] + [""]
    lines += ["## Runs", "", _runs_table(study.runs), ""]
    return lines


def _protocol_table(request: StudyRequest) -> str:
    """The config fields every run of the grid shares (those that differ are the grid's axes or settings)."""
    payloads = [config.hash_payload() | {"paper_preset": config.paper_preset, "selection_metric": config.selection_metric}
                for config in request.configs]
    keys = [k for k in payloads[0] if k not in ("dataset", "model", "loss", "seed")]
    rows = []
    for key in keys:
        values = {repr(p.get(key)) for p in payloads}
        rows.append({"field": key, "value": str(payloads[0].get(key)) if len(values) == 1 else "varies (see settings)"})
    return pd.DataFrame(rows).to_markdown(index=False)


def _runs_table(runs: pd.DataFrame) -> str:
    columns = [c for c in ("run_id", "status", "dataset", "setting", "model", "loss", "seed", "best_epoch", "epochs_run",
                           "train_seconds", "test_NDCG@10") if c in runs.columns]
    return runs[columns].to_markdown(index=False, floatfmt=".4f") if not runs.empty else "(none)"


def linked_files(report: Path) -> list[Path]:
    """Files a report links to (for checking that every link resolves)."""

    text = report.read_text(encoding="utf-8")
    return [report.parent / target for target in re.findall(r"!?\[[^\]]*\]\(([^)]+)\)", text)]


__all__: list[Any] = ["linked_files", "write_report"]
