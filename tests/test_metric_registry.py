"""The metric registry: names parsed once, one per-user function each, used everywhere metrics are."""

from __future__ import annotations

import numpy as np
import pytest
from reporting_store import new_store, ranks_run
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.config import selectable_metrics
from seqbench.configure import make_config
from seqbench.errors import InputError
from seqbench.measure.metrics import metric_names, metrics_from_ranks, parse_metric
from seqbench.reporting.comparisons import per_user_values

RANKS = np.array([0, 4, 9, 30])


def test_mrr_at_k_counts_only_targets_in_the_top_k() -> None:
    metrics = metrics_from_ranks(RANKS, ks=(5, 10))
    assert metrics["MRR@5"] == pytest.approx((1 + 1 / 5) / 4)
    assert metrics["MRR@10"] == pytest.approx((1 + 1 / 5 + 1 / 10) / 4)
    assert metrics["MRR"] == pytest.approx((1 + 1 / 5 + 1 / 10 + 1 / 31) / 4)


def test_every_metric_is_the_mean_of_its_per_user_values() -> None:
    metrics = metrics_from_ranks(RANKS, ks=(1, 5, 10))
    assert list(metrics) == metric_names((1, 5, 10))
    for name, value in metrics.items():
        assert per_user_values(RANKS, name).mean() == pytest.approx(value)
        assert parse_metric(name).name == name


@pytest.mark.parametrize("name", ["Recall@10", "HR", "NDCG@0", "ndcg@10", "NDCG@x", ""])
def test_unknown_metrics_are_refused_not_read_as_ndcg(name: str) -> None:
    with pytest.raises(InputError):
        per_user_values(RANKS, name)


def test_runs_can_select_on_mrr_at_k_as_recbole_does() -> None:
    assert "MRR@10" in selectable_metrics((5, 10, 20))
    assert make_config(None, {"selection_metric": "MRR@10"}).selection_metric == "MRR@10"


def test_runs_command_shows_the_metrics_asked_for(tmp_path) -> None:
    store = new_store(tmp_path)
    ranks_run(store, "r1", "lastfm", "sasrec", "cce", RANKS)
    runner = CliRunner()
    shown = runner.invoke(app, ["runs", "--metrics", "MRR,NDCG@20", "--results", str(store.root)])
    assert shown.exit_code == 0, shown.output
    assert "test_MRR" in shown.output and "test_NDCG@20" in shown.output and "test_HR@10" not in shown.output
    refused = runner.invoke(app, ["runs", "--metrics", "Recall@10", "--results", str(store.root)])
    assert refused.exit_code == 2 and "unknown metric 'Recall@10'" in refused.output
