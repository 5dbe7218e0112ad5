"""The exact speed-ups: length-batched evaluation, the length sampler and its trimmed batches.

Each test compares the fast path with the plain one it replaces: equal ranks and losses (to float
tolerance), every training sample seen once per epoch, stored run ids unchanged by default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqbench.training.evaluate import evaluate_split
from seqbench.training.trainer import Trainer, load_dataset, make_config


def trained(toy_data: Path, model: str, **overrides: object) -> Trainer:
    config = make_config(None, {"dataset": "toy", "model": model, "loss": "cce", "max_len": 30, "batch_size": 32, "device": "cpu", **overrides})
    trainer = Trainer(config, load_dataset("toy", toy_data), torch.device("cpu"))
    trainer.train_epoch(1, None)
    return trainer


@pytest.mark.parametrize("model", ["sasrec", "gru4rec", "bert4rec"])
def test_length_batched_evaluation_ranks_equal_full_width_batches(toy_data: Path, model: str) -> None:
    trainer = trained(toy_data, model)
    split = trainer.dataset.test
    assert (split.inputs(30) == 0).all(axis=0).any()  # some columns are padding for every user
    fast = evaluate_split(trainer.model, split, 30, trainer.device, batch_size=16)
    plain = evaluate_split(trainer.model, split, 30, trainer.device, batch_size=16, by_length=False)
    np.testing.assert_array_equal(fast.ranks, plain.ranks)
    assert fast.metrics == pytest.approx(plain.metrics, rel=1e-12)
