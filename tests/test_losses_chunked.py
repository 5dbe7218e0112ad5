"""The chunked exact cross-entropy equals the dense one and needs a fraction of its memory."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from seqbench.losses import chunked_ce
from seqbench.losses.base import LossBatch
from seqbench.losses.chunked_ce import (
    chunked_cross_entropy,
    dense_cross_entropy,
    fused_cross_entropy,
)
from seqbench.losses.registry import build_loss
from seqbench.measure.allocations import AllocationTracker

N, D = 600, 16


def leaves(seed: int, rows: int, with_bias: bool) -> tuple:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, D, generator=g).requires_grad_()
    table = (torch.randn(N + 1, D, generator=g) * 0.5).requires_grad_()
    bias = torch.randn(N + 1, generator=g).requires_grad_() if with_bias else None
    targets = torch.randint(1, N + 1, (rows,), generator=g)
    return x, table, bias, targets


@pytest.mark.parametrize("chunk", [3, 7, 100, 256, 600, 1000])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("row_block", [16, 53, 2048])
@pytest.mark.parametrize("signs", ["positive", "mixed"])
def test_chunked_equals_dense_in_value_and_gradients(
    chunk: int, with_bias: bool, row_block: int, signs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chunked_ce, "ROW_BLOCK", row_block)  # 16 does not divide the 53 rows
    x, table, bias, targets = leaves(chunk, 53, with_bias)
    weights = torch.rand(53) + 0.1  # a non-uniform upstream gradient
    if signs == "mixed":  # some rows weighted zero or negative: the backward's other branch
        weights[::3] = 0.0
        weights[1::3] *= -1
    params = [p for p in (x, table, bias) if p is not None]
    dense = dense_cross_entropy(x, table, bias, targets)
    chunked = chunked_cross_entropy(x, table, bias, targets, chunk)
    torch.testing.assert_close(chunked, dense, rtol=1e-5, atol=1e-6)
    want = torch.autograd.grad((dense * weights).sum(), params)
    got = torch.autograd.grad((chunked * weights).sum(), params)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(got[1][0].abs().sum()) == 0.0  # the padding row gets no gradient


@pytest.mark.parametrize("strip_bytes", [1, 5 * 4 * N, 2**20])  # 16-row strips, 5 rows (16 win), all rows
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("signs", ["positive", "mixed"])
def test_fused_equals_dense_in_value_and_gradients(strip_bytes: int, with_bias: bool, signs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked_ce, "STRIP_BYTES", strip_bytes)
    x, table, bias, targets = leaves(strip_bytes, 53, with_bias)
    weights = torch.rand(53) + 0.1
    if signs == "mixed":
        weights[::3] = 0.0
        weights[1::3] *= -1
    params = [p for p in (x, table, bias) if p is not None]
    dense = dense_cross_entropy(x, table, bias, targets)
    fused = fused_cross_entropy(x, table, bias, targets)
    torch.testing.assert_close(fused, dense, rtol=1e-5, atol=1e-6)
    want = torch.autograd.grad((dense * weights).sum(), params)
    got = torch.autograd.grad((fused * weights).sum(), params)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(got[1][0].abs().sum()) == 0.0  # the padding row gets no gradient


def test_fused_strips_fit_the_cache_on_cpu_and_take_every_row_on_cuda() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert chunked_ce.strip_rows(5900, 3646, cpu) * 3646 * 4 <= chunked_ce.STRIP_BYTES
    assert chunked_ce.strip_rows(5900, 10**6, cpu) == 16  # never a matrix-vector product
    assert chunked_ce.strip_rows(5900, 10**6, cuda) == 5900


@pytest.mark.parametrize("chunk", [64, 600])
def test_cce_impls_agree_with_padding_rows(chunk: int) -> None:
    g = torch.Generator().manual_seed(chunk)
    positives = torch.randint(1, N + 1, (4, 9), generator=g)
    positives[0, :4] = 0
    positives[2, :] = 0
    results = []
    for impl in ("dense", "chunked", "fused", "torch"):  # torch: F.linear_cross_entropy, chunked
        hidden = torch.randn(4, 9, D, generator=torch.Generator().manual_seed(1)).requires_grad_()
        table = torch.randn(N + 1, D, generator=torch.Generator().manual_seed(2)).requires_grad_()
        loss = build_loss("cce", N, {"ce_impl": impl, "chunk_size": chunk})
        out = loss(LossBatch(hidden, positives, table))
        out.value.backward()
        assert out.diagnostics["chunked"] == float(impl == "chunked")
        results.append((out.value.detach(), hidden.grad, table.grad))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert float(other[1][2].abs().sum()) == 0.0  # padding positions get no gradient


def test_only_requested_gradients_are_computed() -> None:
    x, table, _, targets = leaves(0, 10, False)
    table.requires_grad_(False)
    (want,) = torch.autograd.grad(dense_cross_entropy(x, table, None, targets).sum(), [x])
    for loss in (chunked_cross_entropy(x, table, None, targets, 64), fused_cross_entropy(x, table, None, targets)):
        (grad_x,) = torch.autograd.grad(loss.sum(), [x])
        torch.testing.assert_close(grad_x, want, rtol=1e-5, atol=1e-6)


def test_auto_switches_to_chunked_above_the_budget() -> None:
    loss = build_loss("cce", 1000, {"ce_impl": "auto", "memory_budget_mib": 1})
    assert loss.implementation(200, "cuda") == "dense"  # 200 x 1000 x 4 B = 0.8 MB
    assert loss.implementation(300, "cuda") == "chunked"  # 1.2 MB
    assert loss.implementation(200, "cpu") == "torch" and loss.implementation(300, "cpu") == "chunked"


def step_peak(impl: str, rows: int, items: int, d: int) -> int:
    tracker = AllocationTracker()
    with tracker:
        x = torch.randn(rows, d).requires_grad_()
        table = (torch.randn(items + 1, d) * 0.1).requires_grad_()
        targets = torch.randint(1, items + 1, (rows,))
        if impl == "dense":
            value = dense_cross_entropy(x, table, None, targets).mean()
        else:
            value = chunked_cross_entropy(x, table, None, targets, 2048).mean()
        value.backward()
    return tracker.peak_bytes


def test_chunked_peak_memory_at_1e5_items_is_below_a_tenth_of_dense() -> None:
    rows, items, d = 512, 100_000, 16
    chunked = step_peak("chunked", rows, items, d)  # really run
    with FakeTensorMode():  # dense predicted without allocating its 200 MB logits
        dense = step_peak("dense", rows, items, d)
    assert dense > 2 * rows * items * 4  # logits and their gradient were both live
    assert chunked < dense / 10, (chunked, dense)
