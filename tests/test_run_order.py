"""The order a grid's runs start in: expected longest first (stored rates, else the work proxy),
stable for equal runs; the order changes which run starts when, never what a run computes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from seqbench.configure import make_config
from seqbench.execution.order import longest_first, work_proxy
from seqbench.execution.planned import plan_run


class TableStore:
    """Just the part of a RunStore that ordering reads."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def grid(models: list[str], losses: list[str], seeds: list[int]):
    return [plan_run(make_config(None, {"dataset": "lastfm", "model": m, "loss": l, "seed": s}))
            for m in models for l in losses for s in seeds]


def labels(runs) -> list[str]:
    return [run.label.split("lastfm/")[1] for run in runs]


def test_without_stored_runs_full_softmax_at_every_position_goes_first_then_transformers() -> None:
    runs = grid(["gru4rec", "sasrec"], ["bce", "ce", "cce"], [0, 1])
    ordered = labels(longest_first(runs, TableStore([])))
    assert ordered == ["sasrec/cce/seed0", "sasrec/cce/seed1", "gru4rec/cce/seed0", "gru4rec/cce/seed1",
                       "sasrec/ce/seed0", "sasrec/ce/seed1", "gru4rec/ce/seed0", "gru4rec/ce/seed1",
                       "sasrec/bce/seed0", "sasrec/bce/seed1", "gru4rec/bce/seed0", "gru4rec/bce/seed1"]
    assert sorted(labels(runs)) == sorted(ordered)  # a permutation: nothing dropped or repeated


def test_the_proxy_follows_the_number_of_negatives_and_the_positions() -> None:
    few, many = (make_config(None, {"dataset": "lastfm", "model": "sasrec", "loss": "bce", "loss.num_negatives": k}) for k in (1, 64))
    assert work_proxy(many) > work_proxy(few)
    last = make_config(None, {"dataset": "lastfm", "model": "sasrec", "loss": "cce", "positions": "last"})
    assert work_proxy(last) < work_proxy(make_config(None, {"dataset": "lastfm", "model": "sasrec", "loss": "cce"}))


def test_stored_seconds_per_epoch_decide_when_every_run_has_them(tmp_path: Path) -> None:
    runs = grid(["gru4rec", "sasrec"], ["bce", "cce"], [3])
    # Measured: here GRU4Rec-bce is (made up to be) the slowest, against the proxy's guess.
    rates = {("gru4rec", "bce"): 9.0, ("gru4rec", "cce"): 1.0, ("sasrec", "bce"): 2.0, ("sasrec", "cce"): 5.0}
    rows = [{"dataset": "lastfm", "model": m, "loss": l, "status": "completed", "epochs_run": 10, "train_seconds": 10 * r}
            for (m, l), r in rates.items()]
    assert labels(longest_first(runs, TableStore(rows))) == ["gru4rec/bce/seed3", "sasrec/cce/seed3", "sasrec/bce/seed3", "gru4rec/cce/seed3"]
    # One run without a stored rate of its own cell: all fall back to the proxy (one scale for all).
    partial = [row for row in rows if row["model"] != "sasrec" or row["loss"] != "bce"]
    assert labels(longest_first(runs, TableStore(partial)))[0] == "sasrec/cce/seed3"


def test_the_work_proxy_reads_k_as_num_negatives() -> None:
    """``--set K=...`` is the spec's spelling of num_negatives: the run order reads it too (it was missed)."""
    as_k = make_config(None, {"dataset": "lastfm", "model": "sasrec", "loss": "sampled-ce", "loss_params": {"K": 8}})
    spelled = make_config(None, {"dataset": "lastfm", "model": "sasrec", "loss": "sampled-ce", "loss_params": {"num_negatives": 8}})
    assert work_proxy(as_k) == work_proxy(spelled) != work_proxy(make_config(None, {"dataset": "lastfm", "model": "sasrec", "loss": "sampled-ce"}))
