"""The exact speed-ups: length-batched evaluation, the length sampler and its trimmed batches.

Each test compares the fast path with the plain one it replaces: equal ranks and losses (to float
tolerance), every training sample seen once per epoch, stored run ids unchanged by default.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from seqbench.configure import make_config
from seqbench.data.prepare import load_dataset
from seqbench.measure.ranking import evaluate_split
from seqbench.training.trainer import Trainer


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


def test_the_length_sampler_sees_every_sample_once_in_batches_of_similar_length(toy_data: Path) -> None:
    from seqbench.data.batches import TrainBatches

    train = load_dataset("toy", toy_data).train
    plain = TrainBatches(train, 30, 8, seed=0)
    grouped = TrainBatches(train, 30, 8, seed=0, sampler="length")
    for epoch in (1, 2):
        batches = list(grouped.epoch(epoch))
        assert len(batches) == len(grouped)
        assert sorted(np.concatenate([b.rows.numpy() for b in batches]).tolist()) == sorted(grouped.rows.tolist())
    widest = lambda batches: sum(int((b.windows > 0).sum(1).max()) for b in batches)  # noqa: E731
    assert widest(grouped.epoch(1)) < 0.8 * widest(plain.epoch(1))
    assert [b.rows.tolist() for b in grouped.epoch(1)] != [b.rows.tolist() for b in grouped.epoch(2)]


@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
def test_a_trimmed_step_equals_the_full_width_step(toy_data: Path, model: str) -> None:
    """Without dropout (whose masks depend on the width) the step is the same; BERT4Rec is left
    out for the same reason: it draws its [MASK] positions over the window's width."""
    no_dropout = {"sasrec": {"dropout": 0.0, "attn_dropout": 0.0}, "gru4rec": {"dropout": 0.0}}[model]
    full, trimmed = (trained(toy_data, model, epochs=1, sampler=sampler, model_params=no_dropout) for sampler in ("random", "length"))
    trimmed.model.load_state_dict(full.model.state_dict())
    trimmed.optimizer.load_state_dict(copy.deepcopy(full.optimizer.state_dict()))  # Adam would share moment tensors
    batch = next(iter(full.batches.epoch(3)))
    assert (batch.windows == 0).all(dim=0).any()  # the batch has columns to cut
    losses = [one._step(batch.windows, batch.rows) for one in (full, trimmed)]
    assert float(losses[1]) == pytest.approx(float(losses[0]), rel=1e-5)
    for (name, a), b in zip(full.model.named_parameters(), trimmed.model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_the_sampler_is_in_the_run_id_only_when_set() -> None:
    from seqbench.config import RunConfig
    from seqbench.errors import InputError

    assert "sampler" not in RunConfig().hash_payload()  # every stored run keeps its id
    assert RunConfig(sampler="length").run_id("cpu") != RunConfig().run_id("cpu")
    with pytest.raises(InputError, match="sampler must be one of random, length, got 'sorted'"):
        make_config(None, {"sampler": "sorted"})


def test_cuda_tiles_take_a_share_of_free_memory_and_cpu_tiles_stay_cache_sized() -> None:
    from seqbench.losses.chunked_ce import (
        DEFAULT_CHUNK,
        ROW_BLOCK,
        cuda_tile_shape,
        tile_shape,
    )

    assert tile_shape(12_800, 1_000_000, DEFAULT_CHUNK, torch.device("cpu")) == (ROW_BLOCK, DEFAULT_CHUNK)
    rows, items = cuda_tile_shape(12_800, 1_000_000, DEFAULT_CHUNK, free_bytes=100 * 2**30)
    assert rows == 12_800 and items > 100 * DEFAULT_CHUNK  # fewer, bigger tiles
    assert rows * items * 4 <= 25 * 2**30  # a quarter of the free memory
    assert cuda_tile_shape(100, 3_000, DEFAULT_CHUNK, free_bytes=100 * 2**30) == (100, 3_000)  # one tile
    rows, items = cuda_tile_shape(12_800, 1_000_000, DEFAULT_CHUNK, free_bytes=2**26)  # 64 MiB free
    assert items == DEFAULT_CHUNK and rows * items * 4 <= 2**24


def test_a_one_tile_chunked_loss_equals_the_dense_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    from seqbench.losses import chunked_ce

    monkeypatch.setattr(chunked_ce, "tile_shape", lambda n, items, chunk, device, size=4: (n, items))  # the CUDA case
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(37, 8, generator=generator, requires_grad=True)
    table = torch.randn(101, 8, generator=generator, requires_grad=True)
    targets = torch.randint(1, 101, (37,), generator=generator)
    got = torch.autograd.grad(chunked_ce.chunked_cross_entropy(x, table, None, targets).sum(), [x, table])
    want = torch.autograd.grad(chunked_ce.dense_cross_entropy(x, table, None, targets).sum(), [x, table])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_auto_takes_the_fastest_exact_ce_within_the_budget_and_stored_auto_runs_keep_their_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    from seqbench.losses import cross_entropy
    from seqbench.losses.registry import build_loss

    beauty = build_loss("cce", 12_101, {"ce_impl": "auto"})
    under = int(256 * 2**20 / 4 / 12_101)  # rows whose float32 logits fit the default 256 MiB budget
    assert beauty.implementation(under, "cpu") == "torch" and beauty.implementation(under, "cuda") == "dense"
    assert beauty.implementation(under + 1, "cpu") == "chunked" and beauty.implementation(under + 1, "cuda") == "chunked"
    assert build_loss("cce", cross_entropy.TORCH_MAX_ITEMS + 1, {}).implementation(100, "cpu") == "chunked"
    monkeypatch.setattr(cross_entropy, "torch_chunked_available", lambda: False)  # an older torch
    assert beauty.implementation(under, "cpu") == "chunked"
    # Runs configured with auto carry the rule's version in their id; every other setting keeps its id.
    assert make_config(None, {"loss": "cce"}).code == {"loss": "auto-rule-2"}
    assert make_config(None, {"loss": "ce", "ce_impl": "auto"}).code == {"loss": "auto-rule-2"}
    assert make_config(None, {"loss": "cce", "ce_impl": "dense"}).code == {}
    assert make_config(None, {"loss": "bce"}).code == {}
    assert "code" not in make_config(None, {"loss": "cce", "ce_impl": "fused"}).hash_payload()
