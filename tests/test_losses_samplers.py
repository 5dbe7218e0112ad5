"""Negative samplers: never padding, exclusion excludes, seeded, uniform, popularity-shaped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from seqbench.errors import RuntimeFailure
from seqbench.losses.base import LossBatch, gather_selected, select_positions
from seqbench.losses.samplers import (
    SamplerParams,
    draw_negatives,
    exclusion_table,
    popularity_probs,
    uniform,
    uniform_excluding,
)

N = 30


def batch(seed: int = 0, history: torch.Tensor | None = None) -> LossBatch:
    g = torch.Generator().manual_seed(seed)
    positives = torch.randint(1, N + 1, (4, 7), generator=g)
    positives[1, :3] = 0
    if history is None:
        history = torch.randint(0, N + 1, (4, 12), generator=g)
    return LossBatch(torch.zeros(4, 7, 2), positives, torch.zeros(N + 1, 2), history=history,
                     generator=torch.Generator().manual_seed(seed + 100))


def draw(params: SamplerParams, b: LossBatch, probs: torch.Tensor | None = None, log_q: bool = False):
    selected = gather_selected(b, select_positions(b.positives, "all"))
    return selected, draw_negatives(params, selected, b, N, probs, log_q)


@pytest.mark.parametrize("exclude", [False, True])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_never_padding_and_in_range(exclude: bool, shared: bool, sampler: str) -> None:
    if exclude and sampler == "popularity":
        return
    counts = np.arange(N + 1) % 5  # some items have zero count and must never be drawn
    probs = popularity_probs(counts, N, 1.0, torch.device("cpu")) if sampler == "popularity" else None
    _, negatives = draw(SamplerParams(num_negatives=500, sampler=sampler, exclude_history=exclude, shared=shared), batch(), probs)
    assert negatives.items.dtype == torch.long
    assert int(negatives.items.min()) >= 1 and int(negatives.items.max()) <= N
    if sampler == "popularity":
        assert set(negatives.items.unique().tolist()) <= {j for j in range(1, N + 1) if counts[j] > 0}


@pytest.mark.parametrize("shared", [False, True])
def test_exclusion_excludes_history_and_targets(shared: bool) -> None:
    b = batch(1)
    selected, negatives = draw(SamplerParams(num_negatives=400, exclude_history=True, shared=shared), b)
    for i, row in enumerate(selected.rows.tolist()):
        forbidden = set(b.history[row].tolist()) | set(b.positives[row].tolist())
        assert not forbidden & set(negatives.items[i].tolist())
    if shared:  # every position of a sequence gets the same K negatives
        for row in selected.rows.unique().tolist():
            rows = negatives.items[selected.rows == row]
            assert (rows == rows[0]).all()


def test_seeded_reproducibility() -> None:
    params = SamplerParams(num_negatives=50, exclude_history=True)
    first = draw(params, batch(2))[1].items
    again = draw(params, batch(2))[1].items
    other = draw(params, LossBatch(**{**batch(2).__dict__, "generator": torch.Generator().manual_seed(7)}))[1].items
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_uniform_with_replacement_is_uniform() -> None:
    items = uniform(N, (60_000,), torch.Generator().manual_seed(0), torch.device("cpu"))
    counts = np.bincount(items.numpy(), minlength=N + 1)
    assert counts[0] == 0
    assert chisquare(counts[1:]).pvalue > 1e-3


def test_uniform_excluding_is_uniform_over_the_allowed_items() -> None:
    excluded = torch.tensor([[3, 7, 7, 0, 30, 1]])
    adj, allowed = exclusion_table(excluded, N)
    assert int(allowed[0]) == N - 4
    items = uniform_excluding(adj, allowed, torch.zeros(60_000, dtype=torch.long), 1, torch.Generator().manual_seed(1))
    counts = np.bincount(items.flatten().numpy(), minlength=N + 1)
    assert counts[[0, 1, 3, 7, 30]].sum() == 0
    assert chisquare(counts[[j for j in range(1, N + 1) if j not in (1, 3, 7, 30)]]).pvalue > 1e-3


def test_popularity_follows_counts() -> None:
    counts = np.array([0, 1, 2, 3, 4, 10, 0, 30], dtype=float)  # indexed by item id, 7 items
    probs = popularity_probs(counts, 7, 1.0, torch.device("cpu"))
    from seqbench.losses.samplers import popularity

    items = popularity(probs, (50_000,), torch.Generator().manual_seed(3))
    observed = np.bincount(items.numpy(), minlength=8)[1:]
    expected = counts[1:] / counts.sum() * 50_000
    nonzero = expected > 0
    assert observed[~nonzero].sum() == 0
    assert chisquare(observed[nonzero], expected[nonzero]).pvalue > 1e-3
    flat = popularity_probs(counts, 7, 0.0, torch.device("cpu"))  # power 0: uniform over all items
    torch.testing.assert_close(flat, torch.full((7,), 1 / 7, dtype=torch.float64))


def test_log_q_is_the_draw_probability() -> None:
    counts = np.arange(1, N + 1, dtype=float)
    probs = popularity_probs(counts, N, 1.0, torch.device("cpu"))
    _, negatives = draw(SamplerParams(num_negatives=5, sampler="popularity"), batch(), probs, log_q=True)
    torch.testing.assert_close(negatives.log_q, torch.log(negatives.items.double() / counts.sum()))
    b = batch(4)
    selected, negatives = draw(SamplerParams(num_negatives=5, exclude_history=True), b, log_q=True)
    for i, row in enumerate(selected.rows.tolist()):
        allowed = N - len((set(b.history[row].tolist()) | set(b.positives[row].tolist())) - {0})
        torch.testing.assert_close(negatives.log_q[i], torch.full((5,), -np.log(allowed), dtype=torch.float64))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 12), max_size=15), st.integers(1, 12))
def test_exclusion_table_maps_ranks_to_the_allowed_items_in_order(excluded: list[int], num_items: int) -> None:
    adj, allowed = exclusion_table(torch.tensor([excluded or [0]]), num_items)
    expected = [j for j in range(1, num_items + 1) if j not in excluded]
    assert int(allowed[0]) == len(expected)
    if expected:
        wanted = torch.arange(1, len(expected) + 1)[None, :]
        mapped = wanted + torch.searchsorted(adj, wanted, right=True)
        assert mapped[0].tolist() == expected


def test_a_history_covering_the_catalogue_is_a_clear_failure() -> None:
    everything = torch.arange(1, N + 1).repeat(4, 1)
    with pytest.raises(RuntimeFailure, match="whole catalogue"):
        draw(SamplerParams(num_negatives=2, exclude_history=True), batch(5, history=everything))
