"""``--dry-run``: what a grid (and ``compare --tune``'s studies) would train, and the estimated time."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from seqbench.cli.common import emit_json, out_console
from seqbench.reporting.render import fmt_seconds
from seqbench.services.compare import plan_document


def show_plan(rows: list[dict[str, Any]], as_json: bool, preset_plan: dict[str, Any] | None = None) -> None:
    """``--dry-run``: the grid, what is stored, what would train, and the estimated time."""
    document = plan_document(rows, preset_plan)
    if as_json:
        return emit_json(document)
    if preset_plan is not None:
        show_preset(preset_plan)
    todo = [row for row in rows if row["action"] != "skip"]
    known = [row["estimated_seconds"] for row in todo if row["estimated_seconds"] is not None]
    table = [[r["run"], r["run_id"], r["stored"] or "-", r["action"], fmt_seconds(r["estimated_seconds"]), r["estimate_basis"]] for r in rows]
    headers = ["run", "run id", "stored", "action", "est. training", "estimated from"]
    out_console.print(tabulate(table, headers=headers, disable_numparse=True), highlight=False, markup=False)
    if known:
        total = f"about {fmt_seconds(sum(known))} of training"
        if len(known) < len(todo):
            total += f" plus {len(todo) - len(known)} run(s) with no estimate"
    else:  # nothing similar stored yet (a fresh store): say so rather than "0.0 s"
        total = "no estimate yet (no similar run is stored: `seqbench train --epochs 1` one to get one)"
    out_console.print(
        f"{len(rows)} runs in the grid, {len(rows) - len(todo)} stored, {len(todo)} would train: "
        + (total + " (at most: early stopping may end runs sooner; evaluation comes on top)" if todo else "nothing to do"),
        highlight=False,
        markup=False,
    )


def show_tune_plan(rows: list[dict[str, Any]], tuning: list[dict[str, Any]], trials: int, as_json: bool) -> None:
    """``compare --tune T --dry-run``: the default grid's plan, then what the tuning would add."""
    known = [row["estimated_seconds"] for row in tuning if row["estimated_seconds"] is not None]
    total = sum(known) if known else None
    if as_json:
        return emit_json(plan_document(rows) | {"tuning": tuning, "tuning_estimated_seconds": total})
    show_plan(rows, False)
    table = [[f"{r['dataset']}/{r['model']}/{r['loss']}", r["study_id"], f"{r['trials_stored']} of {trials}", r["trials_to_run"],
              r["retrain_runs"], fmt_seconds(r["estimated_seconds"]), r["estimate_basis"]] for r in tuning]
    out_console.rule(f"--tune {trials}: the same {trials} trials per loss, then the best config retrained with the grid's seeds")
    out_console.print(tabulate(table, headers=["cell", "study", "trials stored", "to run", "retrain runs", "at most", "estimated from"],
                               disable_numparse=True), highlight=False, markup=False)
    missing = len(tuning) - len(known)
    out_console.print(f"tuning: at most {fmt_seconds(total)} of training" + (f" plus {missing} cell(s) with no estimate" if missing else "")
                      + " (every trial at the full max epochs; pruning and early stopping cut it)", highlight=False, markup=False)


def show_preset(plan: dict[str, Any]) -> None:
    """What ``--preset`` sets for each cell of the grid, what the options overrode, what it cannot know."""
    out_console.print(f"preset {plan['name']}: {plan['description']}", highlight=False, markup=False, soft_wrap=True)
    for cell in plan["cells"]:
        values = " ".join(f"{key}={value}" for key, value in cell["values"].items())
        out_console.print(f"  {cell['dataset']}/{cell['model']}/{cell['loss']}: {values}", highlight=False, markup=False, soft_wrap=True)
        if cell["overridden"]:
            out_console.print(f"    overridden by your options: {', '.join(cell['overridden'])}", highlight=False, markup=False)
    if plan["seeds"]:
        out_console.print(f"  the paper's seeds (used when --seeds is not given): {','.join(map(str, plan['seeds']))}", highlight=False, markup=False)
    if plan["unknown"]:
        out_console.print(f"  not set by the preset: {plan['unknown']}", highlight=False, markup=False, soft_wrap=True)
