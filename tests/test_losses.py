"""Every loss against a slow, obviously-correct reference: loops over positions and items."""

from __future__ import annotations

import math

import pytest
import torch

from seqbench.losses.base import LossBatch
from seqbench.losses.registry import build_loss

B, L, D, N, K = 3, 5, 4, 20, 4
SAMPLED = ["bce", "bpr", "top1", "bpr-max", "sampled-ce", "scaled-ce", "nce", "neg", "gbce"]


def make_inputs(seed: int, with_bias: bool) -> dict:
    g = torch.Generator().manual_seed(seed)
    positives = torch.randint(1, N + 1, (B, L), generator=g)
    positives[0, :2] = 0  # left padding
    positives[1, :] = 0  # a sequence without any target
    positives[2, -1] = 0  # BERT4Rec-like: the right-most position has no target
    return {
        "hidden": (torch.randn(B, L, D, generator=g, dtype=torch.float64) * 0.7).requires_grad_(),
        "table": torch.randn(N + 1, D, generator=g, dtype=torch.float64).requires_grad_(),
        "bias": torch.randn(N + 1, generator=g, dtype=torch.float64).requires_grad_() if with_bias else None,
        "positives": positives,
        "negatives": torch.randint(1, N + 1, (B, L, K), generator=g),
    }


def loss_positions(row: torch.Tensor, positions: str) -> list[int]:
    real = [t for t in range(len(row)) if int(row[t]) > 0]
    return real if positions == "all" else real[-1:]


def score(inputs: dict, b: int, t: int, item: int) -> torch.Tensor:
    value = sum(inputs["hidden"][b, t, i] * inputs["table"][item, i] for i in range(D))
    return value + inputs["bias"][item] if inputs["bias"] is not None else value


def sig(x: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-x))


def reference_term(name: str, params: dict, sp: torch.Tensor, sn: list[torch.Tensor]) -> torch.Tensor:
    k = len(sn)
    if name == "bce":
        return -torch.log(sig(sp)) - sum(torch.log(1 - sig(s)) for s in sn)
    if name == "bpr":
        return sum(-torch.log(sig(sp - s)) for s in sn) / k
    if name == "top1":
        return sum(sig(s - sp) + sig(s * s) for s in sn) / k
    if name == "bpr-max":
        z = sum(torch.exp(s) for s in sn)
        w = [torch.exp(s) / z for s in sn]
        reg = params.get("bpreg", 0.0) * sum(wk * s * s for wk, s in zip(w, sn))
        return -torch.log(sum(wk * sig(sp - s) for wk, s in zip(w, sn))) + reg
    if name == "sampled-ce":
        return -sp + torch.log(torch.exp(sp) + sum(torch.exp(s) for s in sn))
    if name == "scaled-ce":
        alpha = params.get("alpha", 100.0)
        return -sp + torch.log(torch.exp(sp) + alpha * sum(torch.exp(s) for s in sn))
    if name in ("nce", "neg"):
        shift = math.log(N / k) - params.get("c", 10.0) if name == "nce" else 0.0
        return -torch.log(sig(sp + shift)) - sum(torch.log(1 - sig(s + shift)) for s in sn)
    if name == "gbce":
        beta = 1 - params.get("t", 0.75) * (1 - k / (N - 1))
        return -beta * torch.log(sig(sp)) - sum(torch.log(1 - sig(s)) for s in sn)
    raise AssertionError(name)


def reference_loss(name: str, params: dict, inputs: dict, positions: str) -> torch.Tensor:
    terms = []
    for b in range(B):
        for t in loss_positions(inputs["positives"][b], positions):
            target = int(inputs["positives"][b, t])
            sp = score(inputs, b, t, target)
            if name in ("ce", "cce"):
                terms.append(-sp + torch.log(sum(torch.exp(score(inputs, b, t, j)) for j in range(1, N + 1))))
            else:
                sn = [score(inputs, b, t, int(j)) for j in inputs["negatives"][b, t]]
                terms.append(reference_term(name, params, sp, sn))
    return torch.stack(terms).mean()


def library_loss(name: str, params: dict, inputs: dict, positions: str | None, seed: int = 0) -> torch.Tensor:
    loss = build_loss(name, N, params, positions)
    batch = LossBatch(
        hidden=inputs["hidden"],
        positives=inputs["positives"],
        item_embeddings=inputs["table"],
        item_bias=inputs["bias"],
        generator=torch.Generator().manual_seed(seed),
        negatives=inputs["negatives"],
    )
    return loss(batch).value


def grads(value: torch.Tensor, inputs: dict) -> list[torch.Tensor]:
    leaves = [inputs["hidden"], inputs["table"]] + ([inputs["bias"]] if inputs["bias"] is not None else [])
    return list(torch.autograd.grad(value, leaves))


def assert_matches(name: str, params: dict, positions: str, with_bias: bool, seed: int = 1) -> None:
    inputs = make_inputs(seed, with_bias)
    mine = library_loss(name, params, inputs, positions)
    expected = reference_loss(name, params, inputs, positions)
    torch.testing.assert_close(mine, expected, rtol=1e-10, atol=1e-12)
    for got, want in zip(grads(mine, inputs), grads(expected, inputs)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", SAMPLED)
@pytest.mark.parametrize("positions", ["all", "last"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_sampled_losses_match_reference(name: str, positions: str, with_bias: bool) -> None:
    assert_matches(name, {"K": K}, positions, with_bias)


@pytest.mark.parametrize(
    "name,params",
    [("bpr-max", {"bpreg": 0.5}), ("scaled-ce", {"alpha": 3.0}), ("nce", {"c": 1.5}), ("gbce", {"t": 0.3})],
)
def test_non_default_hyper_parameters_match_reference(name: str, params: dict) -> None:
    assert_matches(name, {"K": K, **params}, "all", with_bias=True)


@pytest.mark.parametrize("name", ["ce", "cce"])
@pytest.mark.parametrize("impl", ["dense", "chunked"])
@pytest.mark.parametrize("positions", ["all", "last"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_full_cross_entropy_matches_reference(name: str, impl: str, positions: str, with_bias: bool) -> None:
    assert_matches(name, {"ce_impl": impl, "chunk_size": 7}, positions, with_bias)


def test_default_positions_follow_the_spec() -> None:
    expected = {"ce": "last", "cce": "all", "bce": "all", "bpr": "all", "top1": "last", "bpr-max": "last",
                "sampled-ce": "all", "scaled-ce": "all", "nce": "all", "neg": "all", "gbce": "all", "sce": "all"}
    assert {name: build_loss(name, N).positions for name in expected} == expected


def reference_sce(inputs: dict, n_b: int, b_x: int, b_y: int, seed: int) -> tuple[torch.Tensor, int]:
    """The step list of losses.md with loops (same generator calls for the centres)."""
    cells = [(b, t) for b in range(B) for t in loss_positions(inputs["positives"][b], "all")]
    n = len(cells)
    x = [inputs["hidden"][b, t] for b, t in cells]
    targets = [int(inputs["positives"][b, t]) for b, t in cells]
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn((n_b, D), generator=g, dtype=torch.float64)
    best: dict[int, torch.Tensor] = {}
    for c in centres:
        pos_rank = sorted(range(n), key=lambda i: -float(c @ x[i].detach()))[:b_x]
        item_rank = sorted(range(1, N + 1), key=lambda j: -float(c @ inputs["table"][j].detach()))[:b_y]
        for i in pos_rank:
            b, t = cells[i]
            sp = score(inputs, b, t, targets[i])
            others = [torch.exp(score(inputs, b, t, j)) for j in item_rank if j != targets[i]]
            row = -sp + torch.log(torch.exp(sp) + sum(others, torch.zeros((), dtype=torch.float64)))
            if i not in best or float(row.detach()) > float(best[i].detach()):
                best[i] = row
    return torch.stack(list(best.values())).mean(), len(best)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("sizes", [(3, 4, 6), (5, 2, 20), (2, 7, 1)])
def test_sce_matches_step_list_reference(with_bias: bool, sizes: tuple[int, int, int]) -> None:
    n_b, b_x, b_y = sizes
    inputs = make_inputs(3, with_bias)
    loss = build_loss("sce", N, {"n_b": n_b, "b_x": b_x, "b_y": b_y})
    batch = LossBatch(inputs["hidden"], inputs["positives"], inputs["table"], inputs["bias"],
                      generator=torch.Generator().manual_seed(11))
    out = loss(batch)
    expected, kept = reference_sce(inputs, n_b, b_x, b_y, seed=11)
    torch.testing.assert_close(out.value, expected, rtol=1e-10, atol=1e-12)
    n = int((inputs["positives"] > 0).sum())
    assert out.diagnostics["selected_share"] == pytest.approx(kept / n)
    for got, want in zip(grads(out.value, inputs), grads(expected, inputs)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("b_y", [40, 250])  # fewer and more items than one block holds
def test_sce_item_selection_by_blocks_equals_one_global_top_k(b_y: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from seqbench.losses import sce

    g = torch.Generator().manual_seed(0)
    centres, table = torch.randn(6, 5, generator=g), torch.randn(1001, 5, generator=g)
    monkeypatch.setattr(sce, "ITEM_BLOCK", 97)  # does not divide N = 1000
    blocked = sce.top_items(centres, table, b_y)
    exact = (centres @ table[1:].T).topk(b_y, dim=1).indices + 1
    assert torch.equal(blocked.sort(dim=1).values, exact.sort(dim=1).values)


def test_sce_draws_fresh_centres_each_step_and_is_seeded() -> None:
    inputs = make_inputs(4, False)
    loss = build_loss("sce", N, {"n_b": 2, "b_x": 3, "b_y": 4})

    def run(generator: torch.Generator) -> float:
        return float(loss(LossBatch(inputs["hidden"], inputs["positives"], inputs["table"], generator=generator)).value.detach())

    first = torch.Generator().manual_seed(5)
    steps = [run(first) for _ in range(4)]
    again = torch.Generator().manual_seed(5)
    assert [run(again) for _ in range(4)] == steps
    assert len(set(steps)) > 1  # the generator advanced: new buckets every step


def test_sce_mix_centres_run_and_are_seeded() -> None:
    inputs = make_inputs(6, True)
    loss = build_loss("sce", N, {"n_b": 3, "b_x": 3, "b_y": 5, "mix": "true"})
    values = [
        loss(LossBatch(inputs["hidden"], inputs["positives"], inputs["table"], inputs["bias"],
                       generator=torch.Generator().manual_seed(2))).value
        for _ in range(2)
    ]
    assert torch.isfinite(values[0]) and values[0] == values[1]
    values[0].backward()
    assert inputs["hidden"].grad is not None and torch.isfinite(inputs["hidden"].grad).all()


@pytest.mark.parametrize("name", SAMPLED + ["ce", "cce", "sce"])
def test_a_batch_without_targets_gives_a_differentiable_zero(name: str) -> None:
    inputs = make_inputs(7, True)
    inputs["positives"] = torch.zeros_like(inputs["positives"])
    value = library_loss(name, {}, inputs, None)
    assert float(value.detach()) == 0.0
    assert all(float(g.abs().sum()) == 0.0 for g in grads(value, inputs))


def test_sampled_losses_draw_from_the_generator_when_no_negatives_are_given() -> None:
    inputs = make_inputs(8, False)
    inputs["negatives"] = None
    for name in SAMPLED:
        a = library_loss(name, {}, inputs, None, seed=3)
        b = library_loss(name, {}, inputs, None, seed=3)
        c = library_loss(name, {}, inputs, None, seed=4)
        assert float(a.detach()) == float(b.detach()), name
        assert torch.isfinite(a) and (name in ("bce", "bpr") or float(a.detach()) != float(c.detach())), name


class _HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the operator behind float()/item()/bool() of a tensor: a host-device sync on CUDA."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["ce", "cce", "sce", "sampled-ce", "bce"])
def test_diagnostics_read_nothing_back_unless_asked(name: str) -> None:
    inputs = make_inputs(5, with_bias=True)
    params = {"ce_impl": "dense"} if name in ("ce", "cce") else {}
    loss = build_loss(name, N, params)
    # Explicit negatives: the sampler's own check (a history covering the catalogue) reads too.
    negatives = inputs["negatives"] if name in SAMPLED else None
    batch = LossBatch(inputs["hidden"], inputs["positives"], inputs["table"], inputs["bias"],
                      generator=torch.Generator().manual_seed(3), negatives=negatives)
    with _HostReads() as step:
        out = loss(batch)
    assert step.count == 0  # the training step never waits for the device
    with _HostReads() as asked:
        diagnostics = out.diagnostics
    assert asked.count > 0 and diagnostics["positions"] > 0
