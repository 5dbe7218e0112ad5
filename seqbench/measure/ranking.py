"""Full-ranking evaluation: score every item for every user, rank the target, keep every rank.

Protocol (protocol.md): items in the user's history get -inf when ``exclude_seen`` is on, except
the target itself; ties count against the model (constant scores give rank N - 1); NaN scores are
an error. Everything is batched over users on the model's device: no per-user Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from seqbench.data.sequences import EvalSplit, Ragged
from seqbench.errors import RuntimeFailure
from seqbench.measure.metrics import DEFAULT_KS, metrics_from_ranks, ndcg
from seqbench.models.base import SequentialRecommender


@dataclass
class Evaluation:
    metrics: dict[str, float]
    ranks: np.ndarray  # one per evaluated user, aligned with the split's users


def rank_of_targets(scores: Tensor, targets: Tensor, seen_rows: Tensor | None = None, seen_items: Tensor | None = None) -> Tensor:
    """Ranks of ``targets`` (item ids 1..N) in ``scores`` (B x N over items 1..N).

    ``seen_rows``/``seen_items`` are (row, item id) pairs to exclude; the target is never excluded.
    """
    if torch.isnan(scores).any():
        raise RuntimeFailure("the model produced NaN scores during evaluation: training diverged; lower the learning rate")
    columns = (targets - 1)[:, None]
    target_scores = scores.gather(1, columns)
    if seen_rows is not None and seen_items is not None and seen_rows.numel():
        scores = scores.clone()
        scores[seen_rows, seen_items - 1] = float("-inf")
        scores.scatter_(1, columns, target_scores)  # the target is never masked
    # Items scoring higher, plus ties, which count against the model (the target ties with
    # itself, hence the - 1): one comparison pass instead of separate > and == passes.
    return (scores >= target_scores).sum(dim=1) - 1


# A block of scores (users x items) stays under this many bytes, whatever the catalogue: each score
# costs its float32, a masked float32 copy and a bool comparison. Catalogues up to ~10^5 items keep
# the full user batch (ranks identical to before); 10^6 items evaluate ~100 users at a time; past
# ~10^7 the items are chunked too.
SCORE_BLOCK_BYTES = 2**30
BYTES_PER_SCORE = 9
MIN_USERS = 16


def block_shape(batch_size: int, num_items: int) -> tuple[int, int]:
    """(users per batch, items per chunk) that keep one block of scores under SCORE_BLOCK_BYTES."""
    users = min(batch_size, max(MIN_USERS, SCORE_BLOCK_BYTES // (BYTES_PER_SCORE * num_items)))
    items = min(num_items, max(1, SCORE_BLOCK_BYTES // (BYTES_PER_SCORE * users)))
    return users, items


def rank_in_chunks(model: SequentialRecommender, hidden: Tensor, targets: Tensor, chunk: int,
                   seen_rows: Tensor | None = None, seen_items: Tensor | None = None) -> Tensor:
    """:func:`rank_of_targets` over the catalogue in chunks of ``chunk`` items: the items scoring
    at least the target's score (ties against the model), the target and seen items excluded."""
    if not _finite_scoring_inputs(model, hidden):
        raise RuntimeFailure("the model produced NaN scores during evaluation: training diverged; lower the learning rate")
    target_scores = model.score_targets(hidden, targets).float()[:, None]
    rows = torch.arange(len(targets), device=hidden.device)
    ranks = torch.zeros(len(targets), dtype=torch.int64, device=hidden.device)
    for start in range(0, model.num_items, chunk):
        stop = min(start + chunk, model.num_items)
        scores = model.score_items(hidden, start, stop).float()  # fresh: masked in place
        inside = (targets > start) & (targets <= stop)
        scores[rows[inside], targets[inside] - 1 - start] = float("-inf")  # the target is not its own rival
        if seen_rows is not None and seen_items is not None:
            here = (seen_items > start) & (seen_items <= stop)
            scores[seen_rows[here], seen_items[here] - 1 - start] = float("-inf")
        ranks += (scores >= target_scores).sum(dim=1, dtype=torch.int32)  # int32: 1.5x faster than int64
    return ranks


def _finite_scoring_inputs(model: SequentialRecommender, hidden: Tensor) -> bool:
    """Finite inputs give finite (non-NaN) scores: checking d x N inputs once is cheaper than
    checking every B x N block of scores."""
    bias = model.item_bias()
    return bool(torch.isfinite(hidden).all() and torch.isfinite(model.item_embeddings()).all()
                and (bias is None or torch.isfinite(bias).all()))


def _uses_base_scoring(model: SequentialRecommender) -> bool:
    """A model that overrides score_all is scored whole: chunks would bypass its override."""
    return type(model).score_all is SequentialRecommender.score_all


def _seen_pairs(histories: Ragged, rows: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    row_ids, items = histories.coo(rows)
    keep = items > 0
    return (
        torch.from_numpy(row_ids[keep]).to(device),
        torch.from_numpy(items[keep]).to(device),
    )


@torch.no_grad()
def evaluate_split(
    model: SequentialRecommender,
    split: EvalSplit,
    max_len: int,
    device: torch.device,
    batch_size: int = 1024,
    exclude_seen: bool = True,
    ks: tuple[int, ...] = DEFAULT_KS,
    by_length: bool = True,
) -> Evaluation:
    """Rank every user's target among all items; metrics are means over users.

    Users are batched by history length and each batch is cut to its longest history
    (``by_length``): the models ignore left padding (``SequentialRecommender.left_padding_free``)
    and evaluation has no dropout, so the ranks are the ones of full-width batches in user order
    (to float tolerance) at a fraction of the cost where most histories are short.
    """
    was_training = model.training
    model.eval()
    inputs = split.inputs(max_len)
    lengths = (inputs > 0).sum(axis=1)
    by_length = by_length and model.left_padding_free
    order = np.argsort(lengths, kind="stable") if by_length else np.arange(len(split))
    targets = torch.from_numpy(split.targets)
    ranks = np.empty(len(split), dtype=np.int64)
    # Catalogues whose full batch of scores fits one block are ranked as they always were (the same
    # ranks, bit for bit); larger ones in bounded blocks, masked in place, without a copy.
    chunked = batch_size * model.num_items * BYTES_PER_SCORE > SCORE_BLOCK_BYTES and _uses_base_scoring(model)
    batch_size, chunk = block_shape(batch_size, model.num_items)
    for start in range(0, len(split), batch_size):
        rows = order[start : start + batch_size]
        width = max(int(lengths[rows].max()), 1) if by_length else max_len
        histories = torch.from_numpy(inputs[rows][:, max_len - width :])
        hidden = model.encode_last(histories.to(device))
        seen = _seen_pairs(split.histories, rows, device) if exclude_seen else (None, None)
        if chunked:
            rank = rank_in_chunks(model, hidden, targets[rows].to(device), chunk, *seen)
        else:
            rank = rank_of_targets(model.score_all(hidden).float(), targets[rows].to(device), *seen)
        ranks[rows] = rank.cpu().numpy()
    model.train(was_training)
    return Evaluation(metrics_from_ranks(ranks, ks), ranks)


@torch.no_grad()
def per_timestamp_ndcg(
    model: SequentialRecommender,
    split: EvalSplit,
    max_len: int,
    device: torch.device,
    batch_size: int = 256,
    k: int = 10,
    exclude_seen: bool = True,
) -> list[dict[str, float]]:
    """NDCG@k of predicting position t+1 from the prefix ending at t (figure 3 of the CCE paper).

    Uses users whose full sequence (history + target) has at least ``max_len + 1`` items, cut to
    its last ``max_len + 1``; the last two predicted positions are validation and test. With
    ``exclude_seen`` (the run's setting) the items of the prefix are masked, as in
    :func:`evaluate_split`; without it every item is ranked.
    """
    if model.target_positions != "causal":
        raise RuntimeFailure(f"per-timestamp NDCG needs a causal model; '{model.name}' is bidirectional")
    lengths = split.histories.lengths + 1
    users = np.nonzero(lengths >= max_len + 1)[0]
    if len(users) == 0:
        raise RuntimeFailure(f"no user has {max_len + 1} or more items: lower --max-len for per-timestamp NDCG")
    windows = np.concatenate([split.inputs(max_len)[users], split.targets[users, None]], axis=1)
    was_training = model.training
    model.eval()
    totals = np.zeros(max_len)
    for start in range(0, len(users), batch_size):
        window = torch.from_numpy(windows[start : start + batch_size]).to(device)
        hidden = model(window[:, :-1])
        for t in range(max_len):
            scores = model.score_all(hidden[:, t]).float()
            seen: tuple[Tensor | None, Tensor | None] = (None, None)
            if exclude_seen:
                rows = torch.arange(len(window), device=device).repeat_interleave(t + 1)
                seen = (rows, window[:, : t + 1].reshape(-1))
            ranks = rank_of_targets(scores, window[:, t + 1], *seen)
            totals[t] += ndcg(ranks.cpu().numpy(), k).sum()
    model.train(was_training)
    return [{"position": t + 1, f"NDCG@{k}": float(totals[t] / len(users))} for t in range(max_len)]
