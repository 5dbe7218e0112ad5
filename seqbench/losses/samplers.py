"""Negative samplers: uniform (with replacement, or excluding the user's history) and popularity.

Every sampler is vectorised in torch on the device of the tensors it is given, draws from the
run's seeded ``torch.Generator``, and returns item ids in 1..N (0 is padding and never drawn).

Exclusion is exact, not rejection: for each sequence the excluded ids are sorted and deduplicated
into a table ``adj[i] = S_i - i``; a uniform draw ``u`` among the ``N - |S|`` allowed items is then
mapped to the ``u``-th allowed id by ``u + 1 + #{i : adj[i] <= u + 1}`` (one ``searchsorted``).
So a user whose history covers most of the catalogue costs the same as any other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from seqbench.errors import InputError, RuntimeFailure
from seqbench.losses.base import LossBatch, Selected

SAMPLERS = ("uniform", "popularity")


@dataclass
class SamplerParams:
    """Hyper-parameters shared by every loss that samples negatives."""

    num_negatives: int = 1  # K, negatives per position (``K`` is accepted as an alias)
    sampler: str = "uniform"  # uniform | popularity
    exclude_history: bool = False  # never draw an item of the user's history (uniform only)
    shared: bool = False  # one set of K negatives per sequence instead of per position
    pop_power: float = 1.0  # popularity sampler: P(j) proportional to count_j ** pop_power

    def validate(self, num_items: int) -> None:
        if self.num_negatives < 1:
            raise InputError(f"num_negatives (K) must be an integer >= 1 (got {self.num_negatives})")
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {self.sampler!r}; valid: {', '.join(SAMPLERS)}")
        if self.sampler == "popularity" and self.exclude_history:
            raise InputError("exclude_history=true needs sampler=uniform (valid: uniform, or exclude_history=false)")
        if self.pop_power < 0:
            raise InputError(f"pop_power must be >= 0 (got {self.pop_power})")


@dataclass
class Negatives:
    items: Tensor  # n x K item ids in 1..N
    log_q: Tensor | None  # n x K float64 log-probability of drawing each item in one draw (logQ correction)


def uniform(num_items: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform with replacement over 1..N."""
    return torch.randint(1, num_items + 1, shape, generator=generator, device=device)


def exclusion_table(excluded: Tensor, num_items: int) -> tuple[Tensor, Tensor]:
    """R x M excluded ids (0 = none; duplicates and ids outside 1..N ignored) -> (adj R x M, allowed R).

    ``adj`` is non-decreasing per row: ``S_i - i`` for the sorted distinct excluded ids, then N + 1.
    ``allowed`` is the number of items of 1..N left to draw from in each row.
    """
    ids, _ = excluded.sort(dim=1)
    repeated = torch.zeros_like(ids, dtype=torch.bool)
    repeated[:, 1:] = ids[:, 1:] == ids[:, :-1]
    invalid = (ids < 1) | (ids > num_items) | repeated
    big = num_items + 1
    ids, _ = ids.masked_fill(invalid, big).sort(dim=1)  # distinct valid ids first, in order
    valid = ids <= num_items
    rank = torch.arange(ids.shape[1], device=ids.device)
    adj = torch.where(valid, ids - rank, torch.full_like(ids, big))
    return adj, num_items - valid.sum(dim=1)


def uniform_excluding(
    adj: Tensor, allowed: Tensor, rows: Tensor, k: int, generator: torch.Generator | None
) -> Tensor:
    """For each entry of ``rows`` (n), K ids drawn uniformly with replacement among that row's allowed items."""
    room = allowed[rows]
    if rows.numel() and int(room.min()) <= 0:
        raise RuntimeFailure("a user's history covers the whole catalogue: no negative can be drawn for it")
    draws = torch.rand((rows.shape[0], k), generator=generator, dtype=torch.float64, device=rows.device)
    rank = (draws * room[:, None]).floor().long()
    rank = torch.minimum(rank, (room - 1)[:, None])  # guard against rounding up to `room`
    wanted = rank + 1
    return wanted + torch.searchsorted(adj[rows].contiguous(), wanted, right=True)


def popularity_probs(item_counts: np.ndarray | Tensor, num_items: int, power: float, device: torch.device) -> Tensor:
    """Probabilities over items 1..N (length N) proportional to count ** power."""
    counts = torch.as_tensor(np.asarray(item_counts), dtype=torch.float64, device=device)
    if counts.shape[0] == num_items + 1:
        counts = counts[1:]  # indexed by item id, drop padding
    if counts.shape != (num_items,):
        raise InputError(f"item_counts must have N = {num_items} or N + 1 entries (got {tuple(counts.shape)})")
    if bool((counts < 0).any()):
        raise InputError("item_counts must be >= 0")
    weights = counts.pow(power)
    total = float(weights.sum())
    if total <= 0:
        raise InputError("item_counts are all zero: the popularity sampler has nothing to draw")
    return weights / total


def popularity(probs: Tensor, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    """Draws with replacement from ``probs`` (over items 1..N)."""
    count = math.prod(shape)
    flat = torch.multinomial(probs.float(), count, replacement=True, generator=generator)
    return (flat + 1).view(shape)


def history_of(batch: LossBatch) -> Tensor:
    """The ids a history-excluding sampler must avoid per sequence: the history and every target."""
    if batch.history is None:
        return batch.positives
    return torch.cat([batch.history.to(batch.positives.device), batch.positives], dim=1)


def draw_negatives(
    params: SamplerParams,
    selected: Selected,
    batch: LossBatch,
    num_items: int,
    probs: Tensor | None,
    want_log_q: bool = False,
) -> Negatives:
    """K negatives for every selected position, per position or shared per sequence."""
    device = selected.targets.device
    generator = batch.generator
    adj = allowed = None
    if params.exclude_history:
        adj, allowed = exclusion_table(history_of(batch), num_items)
    if batch.negatives is not None:
        items = batch.negatives[selected.mask].to(device)
    else:
        rows = torch.arange(batch.positives.shape[0], device=device) if params.shared else selected.rows
        if params.sampler == "popularity":
            assert probs is not None, "popularity sampler needs item_counts"
            drawn = popularity(probs, (rows.shape[0], params.num_negatives), generator)
        elif adj is not None and allowed is not None:
            drawn = uniform_excluding(adj, allowed, rows, params.num_negatives, generator)
        else:
            drawn = uniform(num_items, (rows.shape[0], params.num_negatives), generator, device)
        items = drawn[selected.rows] if params.shared else drawn
    log_q = _log_q(params, items, selected.rows, num_items, probs, allowed) if want_log_q else None
    return Negatives(items=items, log_q=log_q)


def _log_q(
    params: SamplerParams, items: Tensor, rows: Tensor, num_items: int, probs: Tensor | None, allowed: Tensor | None
) -> Tensor:
    """log Q(j): the probability of drawing item j in one draw under the configured sampler."""
    if params.sampler == "popularity":
        assert probs is not None
        return probs.log()[items - 1]
    room = allowed[rows].double() if allowed is not None else torch.full_like(rows, num_items, dtype=torch.float64)
    return (-room.log())[:, None].expand(items.shape)
