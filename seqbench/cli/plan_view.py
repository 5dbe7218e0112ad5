"""``--dry-run``: what a grid (and ``compare --tune``'s studies) would train, and the estimated time."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from seqbench.cli.common import emit_json, out_console
from seqbench.reporting.render import fmt_seconds
from seqbench.services.compare import plan_document


def show_plan(rows: list[dict[str, Any]], as_json: bool) -> None:
    """``--dry-run``: the grid, what is stored, what would train, and the estimated time."""
    document = plan_document(rows)
    if as_json:
        return emit_json(document)
    todo = [row for row in rows if row["action"] != "skip"]
    known = [row["estimated_seconds"] for row in todo if row["estimated_seconds"] is not None]
    table = [[r["run"], r["run_id"], r["stored"] or "-", r["action"], fmt_seconds(r["estimated_seconds"]), r["estimate_basis"]] for r in rows]
    out_console.print(tabulate(table, headers=["run", "run id", "stored", "action", "est. training", "estimated from"], disable_numparse=True), highlight=False, markup=False)
    total = f"about {fmt_seconds(sum(known))} of training" + (f" plus {len(todo) - len(known)} run(s) with no estimate" if len(known) < len(todo) else "")
    out_console.print(f"{len(rows)} runs in the grid, {len(rows) - len(todo)} stored, {len(todo)} would train: "
                      + (total + " (at most: early stopping may end runs sooner; evaluation comes on top)" if todo else "nothing to do"), highlight=False, markup=False)


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
