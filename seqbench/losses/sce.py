"""``sce``: scalable cross-entropy (Mezentsev et al.), softmax over MIPS-selected hard negatives.

Step list (losses.md), for the n selected positions X (n x d), targets t and items E (N x d):
1. positive logits s_i = <X_i, E_{t_i}> (with gradient);
2. without gradient, fresh bucket centres C (n_b x d) from the run's generator every step:
   standard normal, or (``mix``) Omega^T X with Omega ~ N(0, 1)^{n x n_b};
3. without gradient, per bucket the top-b_x positions by <C_b, X_i> and the top-b_y items by
   <C_b, E_j> (top-k, so a position may fall in several buckets or none);
4. with gradient, S[b, a, c] = <X_{Ix[b,a]}, E_{Iy[b,c]}> by one batched matmul, -inf where the item
   is that position's target, the positive logit appended; row loss = logsumexp(row) - positive;
5. per position the maximum row loss over the buckets that selected it; unselected positions are
   dropped; the loss is the mean over the selected positions.
Memory O(n_b b_x b_y + n_b (n + N)) instead of O(n N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from seqbench.errors import InputError
from seqbench.losses.base import Loss, LossBatch, LossOutput, gather_selected, zero_loss
from seqbench.space import choice, integer

DEFAULT_B_Y = 256


@dataclass
class SCEParams:
    n_b: int | None = None  # buckets; None = int(2 sqrt(n)) for the step's n positions
    b_x: int | None = None  # positions per bucket; None = int(2 sqrt(n)), at most n
    b_y: int | None = None  # items per bucket; None = 256 (or N when the catalogue is smaller)
    mix: bool = False  # centres as random mixtures of the batch's hidden states

    def validate(self, num_items: int) -> None:
        for key in ("n_b", "b_x", "b_y"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise InputError(f"{key} must be >= 1 (got {value})")
        if self.b_y is not None and self.b_y > num_items:
            raise InputError(f"b_y must be at most the number of items N = {num_items} (got {self.b_y})")

    def sizes(self, n: int, num_items: int) -> tuple[int, int, int]:
        """(n_b, b_x, b_y) for a step with n positions."""
        auto = max(1, int(2 * math.sqrt(n)))
        if self.b_x is not None and self.b_x > n:
            raise InputError(f"b_x must be at most the number of loss positions n = {n} (got {self.b_x})")
        n_b = self.n_b if self.n_b is not None else auto
        b_x = self.b_x if self.b_x is not None else min(auto, n)
        b_y = self.b_y if self.b_y is not None else min(DEFAULT_B_Y, num_items)
        return n_b, b_x, b_y


def bucket_centres(x: Tensor, n_b: int, mix: bool, generator: torch.Generator | None) -> Tensor:
    """Step 2: n_b x d centres, fresh from the generator."""
    if mix:
        omega = torch.randn((x.shape[0], n_b), generator=generator, device=x.device, dtype=x.dtype)
        return omega.T @ x
    return torch.randn((n_b, x.shape[1]), generator=generator, device=x.device, dtype=x.dtype)


ITEM_BLOCK = 1 << 16  # items scored against the centres at a time (n_b x block floats live)


def top_items(centres: Tensor, table: Tensor, b_y: int) -> Tensor:
    """Step 3 for items: per bucket the ids (1..N) of the b_y items with the largest <C_b, E_j>.

    The catalogue is scored block by block with a running top-k, so memory is n_b x (block + b_y)
    instead of n_b x N (900 MB at n_b = 226, N = 1e6); the selected set is the same.
    """
    num_items = table.shape[0] - 1
    best_scores = best_ids = None
    for start in range(1, num_items + 1, ITEM_BLOCK):
        stop = min(start + ITEM_BLOCK, num_items + 1)
        scores = centres @ table[start:stop].T
        top = scores.topk(min(b_y, stop - start), dim=1)
        ids = top.indices + start
        if best_scores is None or best_ids is None:  # the first block (both are set together)
            best_scores, best_ids = top.values, ids
            continue
        merged = torch.cat([best_scores, top.values], dim=1)
        keep = merged.topk(min(b_y, merged.shape[1]), dim=1).indices
        best_scores = merged.gather(1, keep)
        best_ids = torch.cat([best_ids, ids], dim=1).gather(1, keep)
    assert best_ids is not None
    return best_ids


def one_per_position(row_loss: Tensor, positions: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Step 5: for each position the index of one bucket row holding its maximum loss.

    Returns (chosen entry indices into the flat row losses, selected position ids). The gradient
    then flows through exactly one entry per position, even when two buckets tie.
    """
    detached = row_loss.detach()
    best = torch.full((n,), float("-inf"), dtype=detached.dtype, device=detached.device)
    best = best.scatter_reduce(0, positions, detached, reduce="amax")
    entry = torch.arange(detached.shape[0], device=detached.device)
    sentinel = detached.shape[0]
    candidates = torch.where(detached == best[positions], entry, sentinel)
    first = torch.full((n,), sentinel, dtype=torch.long, device=detached.device)
    first = first.scatter_reduce(0, positions, candidates, reduce="amin")
    chosen = first[first < sentinel]
    return chosen, positions[chosen]


class SCE(Loss):
    name = "sce"
    paper = "Mezentsev et al. 2024, scalable cross-entropy (SCE)"
    help = "scalable cross-entropy: softmax over MIPS-bucketed hard negatives (Mezentsev et al.)"
    default_positions = "all"
    needs_negatives = False  # negatives come from the buckets, not from a sampler
    Params = SCEParams
    params: SCEParams
    # Buckets and the centres' kind; b_y is left at its default because it may not exceed N.
    space = (integer("loss.n_b", 8, 128, log=True), choice("loss.mix", False, True))

    def compute(self, batch: LossBatch, mask: Tensor) -> LossOutput:
        selected = gather_selected(batch, mask)
        n = selected.count
        if n == 0:
            return LossOutput(zero_loss(batch), lambda: {"positions": 0.0, "selected_share": 0.0})
        x, targets, table, bias = selected.hidden, selected.targets, batch.item_embeddings, batch.item_bias
        n_b, b_x, b_y = self.params.sizes(n, self.num_items)
        with torch.no_grad():  # steps 2 and 3
            centres = bucket_centres(x.detach(), n_b, self.params.mix, batch.generator)
            ix = (centres @ x.detach().T).topk(b_x, dim=1).indices  # n_b x b_x positions
            iy = top_items(centres, table.detach(), b_y)  # n_b x b_y item ids
        # One gather for the positives and the buckets' items, so the table's gradient is one
        # (N + 1) x d tensor rather than two plus their sum (the peak at large N).
        rows = table.index_select(0, torch.cat([targets, iy.reshape(-1)]))
        pos = (x * rows[:n]).sum(-1)  # step 1
        if bias is not None:
            pos = pos + bias[targets]
        # Step 4: bucket logits by one batched matmul, the target masked, the positive appended.
        logits = torch.bmm(x[ix], rows[n:].view(n_b, b_y, -1).transpose(1, 2))
        if bias is not None:
            logits = logits + bias[iy][:, None, :]
        logits = logits.masked_fill(iy[:, None, :] == targets[ix][:, :, None], float("-inf"))
        pos_rows = pos[ix]
        full = torch.cat([logits, pos_rows[:, :, None]], dim=2)
        row_loss = (torch.logsumexp(full, dim=2) - pos_rows).reshape(-1)
        chosen, kept = one_per_position(row_loss, ix.reshape(-1), n)  # step 5
        value = row_loss[chosen].mean()
        positive = pos.detach()
        return LossOutput(value, lambda: {
            "positions": float(n),
            "selected_share": float(kept.shape[0]) / n,
            "mean_positive_logit": float(positive.mean()),
            "buckets": float(n_b),
        })
