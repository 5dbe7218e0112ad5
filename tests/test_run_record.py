"""What a run record says about how the run ran: the CE implementation used, the CPU threads.

And that a run leaves the process as it found it (torch's thread count is process-wide), and that
re-evaluation follows the run's own settings.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from seqbench.configure import make_config
from seqbench.reporting.runs import loss_labels
from seqbench.training.reevaluate import evaluate_stored
from seqbench.training.trainer import train_run

FAST = {"dataset": "toy", "model": "gru4rec", "loss": "cce", "epochs": 1, "batch_size": 32, "max_len": 10, "eval_batch_size": 64}


def train(toy_data: Path, results: Path, **overrides: object):
    return train_run(make_config(None, FAST | overrides), toy_data, results)


@pytest.mark.parametrize(("budget_mib", "used"), [(1e-6, "chunked"), (256.0, "torch")])
def test_auto_ce_stores_the_implementation_it_chose(toy_data: Path, tmp_path: Path, budget_mib: float, used: str) -> None:
    # ce_impl=auto picks chunked when the logits exceed the budget (a tiny one forces it), and on
    # CPU under it torch's chunked CE at this catalogue size (rule 2).
    stored = train(toy_data, tmp_path, loss_params={"ce_impl": "auto", "memory_budget_mib": budget_mib})
    assert stored.row["ce_impl"] == used
    label = loss_labels(pd.DataFrame([stored.row]), with_impl=True).iloc[0]
    assert label == f"cce[{used}]"


def test_a_run_restores_the_thread_count_and_records_the_one_it_used(toy_data: Path, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    pinned = train(toy_data, tmp_path / "a", threads=before + 1)
    assert torch.get_num_threads() == before  # a later threads=0 run must not inherit before + 1
    assert pinned.row["threads_used"] == before + 1
    default = train(toy_data, tmp_path / "b", threads=0)
    assert default.row["threads_used"] == before


def test_per_timestamp_eval_follows_the_runs_exclude_seen(toy_data: Path, tmp_path: Path) -> None:
    # exclude_seen changes evaluation only: after one epoch both runs hold the same weights, so
    # their per-position NDCG differs only by whether the prefix items were masked.
    masked = train(toy_data, tmp_path, exclude_seen=True)
    plain = train(toy_data, tmp_path, exclude_seen=False)
    curves = [
        [p["NDCG@10"] for p in evaluate_stored(run.run_id, tmp_path, toy_data, per_timestamp=True, device_name="cpu")["per_timestamp"]]
        for run in (masked, plain)
    ]
    assert all(m >= p for m, p in zip(*curves)) and sum(curves[0]) > sum(curves[1])
