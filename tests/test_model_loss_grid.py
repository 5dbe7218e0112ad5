"""Every model trains with every loss; with cce each model learns beyond popularity ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqbench.configure import make_config
from seqbench.data.sequences import load_prepared
from seqbench.losses.registry import LOSSES
from seqbench.measure.metrics import metrics_from_ranks
from seqbench.measure.ranking import rank_of_targets
from seqbench.models.registry import MODELS
from seqbench.training.trainer import train_run

SMALL_LOSS_PARAMS = {"num_negatives": 8}  # catalogues of 40 items: keep K well below N
SMALL = {"dataset": "toy", "batch_size": 64, "max_len": 10, "eval_batch_size": 128}


def loss_overrides(loss: str) -> dict[str, object]:
    from seqbench.losses.registry import default_params

    keys = default_params(loss)
    return {f"loss.{k}": v for k, v in SMALL_LOSS_PARAMS.items() if k in keys}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("loss", LOSSES.names())
def test_every_model_trains_with_every_loss(model: str, loss: str, toy_data: Path, tmp_path: Path) -> None:
    config = make_config(None, SMALL | {"model": model, "loss": loss, "epochs": 1} | loss_overrides(loss))
    stored = train_run(config, toy_data, tmp_path)
    assert stored.row["status"] == "completed"
    assert np.isfinite(stored.epochs["train_loss"]).all()


def popularity_ndcg10(data_dir: Path) -> float:
    dataset = load_prepared("toy", data_dir)
    scores = torch.from_numpy(dataset.item_counts()[1:].astype(np.float32)).expand(len(dataset.valid), -1)
    ranks = rank_of_targets(scores, torch.from_numpy(dataset.valid.targets)).numpy()
    return metrics_from_ranks(ranks)["NDCG@10"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_model_learns_beyond_popularity_with_cce(model: str, toy_data: Path, tmp_path: Path) -> None:
    config = make_config(None, SMALL | {"model": model, "loss": "cce", "epochs": 15, "patience": 15, "lr": 5e-3})
    stored = train_run(config, toy_data, tmp_path)
    losses = stored.epochs["train_loss"].to_numpy()
    assert losses[-1] < losses[0]
    assert stored.row["valid_NDCG@10"] > popularity_ndcg10(toy_data) + 0.05
