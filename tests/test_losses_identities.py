"""The identities of losses.md, each checked on random inputs (values and gradients)."""

from __future__ import annotations

import math

import torch

from seqbench.losses.base import LossBatch, select_positions
from seqbench.losses.registry import build_loss

B, L, D, N = 4, 6, 5, 12


def inputs(seed: int, k: int = 3) -> dict:
    g = torch.Generator().manual_seed(seed)
    positives = torch.randint(1, N + 1, (B, L), generator=g)
    positives[0, :3] = 0
    positives[3, :5] = 0
    return {
        "hidden": torch.randn(B, L, D, generator=g, dtype=torch.float64).requires_grad_(),
        "item_embeddings": torch.randn(N + 1, D, generator=g, dtype=torch.float64).requires_grad_(),
        "item_bias": torch.randn(N + 1, generator=g, dtype=torch.float64).requires_grad_(),
        "positives": positives,
        "history": torch.randint(0, N + 1, (B, 4), generator=g),
        "negatives": torch.randint(1, N + 1, (B, L, k), generator=g),
    }


def run(name: str, params: dict, data: dict, positions: str | None = None, seed: int = 0) -> tuple:
    batch = LossBatch(generator=torch.Generator().manual_seed(seed), **data)
    value = build_loss(name, N, params, positions)(batch).value
    leaves = [data["hidden"], data["item_embeddings"], data["item_bias"]]
    return value, torch.autograd.grad(value, leaves)


def assert_same(a: tuple, b: tuple) -> None:
    torch.testing.assert_close(a[0], b[0], rtol=1e-10, atol=1e-12)
    for x, y in zip(a[1], b[1]):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_cce_is_the_mean_over_positions_of_ce_at_each_position() -> None:
    data = inputs(0)
    mask = select_positions(data["positives"], "all")
    per_position = []
    for b, t in mask.nonzero().tolist():
        only = torch.zeros_like(data["positives"])
        only[b, t] = data["positives"][b, t]  # ce at position t: the only target left is t's
        per_position.append(run("ce", {"ce_impl": "dense"}, {**data, "positives": only})[0])
    cce = run("cce", {"ce_impl": "dense"}, data)[0]
    torch.testing.assert_close(cce, torch.stack(per_position).mean(), rtol=1e-12, atol=0)


def test_scaled_ce_with_alpha_one_is_sampled_ce_with_the_same_negatives() -> None:
    data = inputs(1)
    assert_same(run("scaled-ce", {"alpha": 1, "K": 3}, data), run("sampled-ce", {"K": 3}, data))
    # and with negatives drawn by the sampler from the same generator state
    del data["negatives"]
    same_sampler = {"K": 7, "exclude_history": False}
    assert_same(run("scaled-ce", {"alpha": 1, **same_sampler}, data, seed=9),
                run("sampled-ce", same_sampler, data, seed=9))


def test_sampled_ce_with_every_other_item_as_negative_is_cce() -> None:
    data = inputs(2)
    everything = torch.arange(1, N + 1)
    negatives = torch.ones(B, L, N - 1, dtype=torch.long)
    for b in range(B):
        for t in range(L):
            target = int(data["positives"][b, t])
            if target:
                negatives[b, t] = everything[everything != target]
    data["negatives"] = negatives
    assert_same(run("sampled-ce", {"K": N - 1}, data), run("cce", {"ce_impl": "chunked", "chunk_size": 5}, data))


def test_gbce_with_t_zero_is_bce() -> None:
    data = inputs(3, k=4)
    assert_same(run("gbce", {"t": 0, "K": 4}, data), run("bce", {"K": 4}, data))


def test_neg_is_nce_with_c_equal_to_log_n_over_k() -> None:
    data = inputs(4, k=3)
    assert_same(run("neg", {"K": 3}, data), run("nce", {"K": 3, "c": math.log(N / 3)}, data))


def test_sce_with_one_bucket_over_all_positions_and_items_is_cce() -> None:
    data = inputs(5)
    n = int((data["positives"] > 0).sum())
    assert_same(run("sce", {"n_b": 1, "b_x": n, "b_y": N}, data), run("cce", {"ce_impl": "dense"}, data))


def test_uniform_logq_correction_is_scaled_ce_with_alpha_n_over_k() -> None:
    data = inputs(6, k=3)
    assert_same(run("sampled-ce", {"K": 3, "logq": True, "exclude_history": False}, data),
                run("scaled-ce", {"K": 3, "alpha": N / 3}, data))
