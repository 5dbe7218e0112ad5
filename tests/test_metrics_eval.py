"""Metrics and full-ranking evaluation against hand-computed and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from seqbench.data.sequences import EvalSplit, Ragged
from seqbench.errors import RuntimeFailure
from seqbench.measure.metrics import metrics_from_ranks
from seqbench.measure.ranking import evaluate_split, per_timestamp_ndcg, rank_of_targets
from seqbench.models.base import SequentialRecommender


def test_metrics_from_hand_computed_ranks() -> None:
    metrics = metrics_from_ranks(np.array([0, 4, 9, 30]), ks=(5, 10))
    assert metrics["HR@5"] == pytest.approx(2 / 4)
    assert metrics["HR@10"] == pytest.approx(3 / 4)
    assert metrics["NDCG@5"] == pytest.approx((1 + 1 / math.log2(6)) / 4)
    assert metrics["NDCG@10"] == pytest.approx((1 + 1 / math.log2(6) + 1 / math.log2(11)) / 4)
    assert metrics["MRR"] == pytest.approx((1 + 1 / 5 + 1 / 10 + 1 / 31) / 4)


def test_constant_scores_rank_last_because_ties_count_against_the_model() -> None:
    scores = torch.zeros(3, 7)
    ranks = rank_of_targets(scores, torch.tensor([1, 4, 7]))
    assert ranks.tolist() == [6, 6, 6]


def test_history_masking_never_masks_the_target() -> None:
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0]])  # items 1..4
    # History holds items 1, 2 and the target 3 itself: 1 and 2 are masked, 3 keeps its score.
    rows, items = torch.tensor([0, 0, 0]), torch.tensor([1, 2, 3])
    assert rank_of_targets(scores, torch.tensor([3]), rows, items).tolist() == [0]
    assert rank_of_targets(scores, torch.tensor([3])).tolist() == [2]


def test_nan_scores_are_an_error() -> None:
    with pytest.raises(RuntimeFailure, match="NaN"):
        rank_of_targets(torch.tensor([[0.1, float("nan")]]), torch.tensor([1]))


class FixedScores(SequentialRecommender):
    """Scores come from a fixed per-user table; users are evaluated in order, batch by batch."""

    name = "fixed"
    Config = dict
    left_padding_free = False  # it knows users by the order they come in: keep user order

    def __init__(self, table: Tensor) -> None:
        super().__init__({}, num_items=table.shape[1], max_len=4)
        self.table = table
        self.dummy = nn.Parameter(torch.zeros(1))
        self.next_user = 0

    def encode_last(self, histories: Tensor) -> Tensor:
        users = torch.arange(self.next_user, self.next_user + len(histories))
        self.next_user += len(histories)
        return users[:, None].float()

    def score_all(self, hidden: Tensor) -> Tensor:
        return self.table[hidden[:, 0].long()]

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.encode_last(input_ids)[:, None, :]

    def item_embeddings(self) -> Tensor:
        return torch.zeros(self.num_items + 1, 1)


def brute_force_rank(scores: np.ndarray, target: int, history: list[int], exclude_seen: bool) -> int:
    rank = 0
    for item in range(1, len(scores) + 1):
        if item == target:
            continue
        score = -np.inf if exclude_seen and item in history else scores[item - 1]
        if score >= scores[target - 1]:
            rank += 1
    return rank


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_evaluation_of_a_score_matrix_equals_brute_force(exclude_seen: bool) -> None:
    rng = np.random.default_rng(0)
    users, items = 37, 25
    # Rounded scores create ties on purpose.
    table = np.round(rng.normal(size=(users, items)), 1).astype(np.float32)
    histories, targets = [], []
    for user in range(users):
        history = rng.integers(1, items + 1, size=rng.integers(1, 6)).tolist()
        target = int(rng.integers(1, items + 1))
        histories.append(history)
        targets.append(target)
    split = EvalSplit(np.arange(users), Ragged.from_lists(histories), np.array(targets))
    model = FixedScores(torch.from_numpy(table))
    result = evaluate_split(model, split, max_len=4, device=torch.device("cpu"), batch_size=8, exclude_seen=exclude_seen)
    expected = [brute_force_rank(table[u], targets[u], histories[u], exclude_seen) for u in range(users)]
    assert result.ranks.tolist() == expected
    assert result.metrics == pytest.approx(metrics_from_ranks(np.array(expected)))


class ItemIdScores(SequentialRecommender):
    """A causal model that scores every item by its id at every position (higher id ranks first)."""

    name = "item-id"
    Config = dict

    def __init__(self, num_items: int, max_len: int) -> None:
        super().__init__({}, num_items=num_items, max_len=max_len)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: Tensor) -> Tensor:
        return torch.ones(*input_ids.shape, 1)

    def item_embeddings(self) -> Tensor:
        return torch.arange(self.num_items + 1, dtype=torch.float32)[:, None]


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_per_timestamp_ndcg_follows_the_runs_exclude_seen(exclude_seen: bool) -> None:
    # Descending sequences: every earlier (seen) item outscores the next target, so masking them
    # or not changes every rank; the brute force applies the run's exclude_seen at each position.
    items, max_len = 12, 4
    sequences = [[12, 10, 8, 6, 4], [11, 9, 7, 5, 3, 1], [9, 8, 7, 6, 5]]
    split = EvalSplit(np.arange(3), Ragged.from_lists([s[:-1] for s in sequences]), np.array([s[-1] for s in sequences]))
    model = ItemIdScores(items, max_len)
    result = per_timestamp_ndcg(model, split, max_len, torch.device("cpu"), k=10, exclude_seen=exclude_seen)
    scores = np.arange(1, items + 1, dtype=np.float32)
    for t in range(max_len):
        ranks = []
        for sequence in sequences:
            window = sequence[-(max_len + 1):]
            ranks.append(brute_force_rank(scores, window[t + 1], window[: t + 1], exclude_seen))
        expected = float(np.mean([1 / math.log2(r + 2) if r < 10 else 0.0 for r in ranks]))
        assert result[t]["NDCG@10"] == pytest.approx(expected)
    masked = per_timestamp_ndcg(model, split, max_len, torch.device("cpu"), k=10, exclude_seen=True)
    assert exclude_seen or all(a["NDCG@10"] < b["NDCG@10"] for a, b in zip(result, masked))


class LookupEncoder(SequentialRecommender):
    """Base-class scoring (dot product plus bias) over small integer vectors: exact arithmetic, so
    ties are real ties whichever way a score is computed."""

    name = "lookup"
    Config = dict
    left_padding_free = False

    def __init__(self, user_vectors: Tensor, item_vectors: Tensor, bias: Tensor) -> None:
        super().__init__({}, num_items=item_vectors.shape[0] - 1, max_len=4)
        self.users, self.items, self.bias = user_vectors, item_vectors, bias
        self.dummy = nn.Parameter(torch.zeros(1))
        self.next_user = 0

    def encode_last(self, histories: Tensor) -> Tensor:
        hidden = self.users[self.next_user : self.next_user + len(histories)]
        self.next_user += len(histories)
        return hidden

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.encode_last(input_ids)[:, None, :]

    def item_embeddings(self) -> Tensor:
        return self.items

    def item_bias(self) -> Tensor:
        return self.bias


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_a_catalogue_evaluated_in_item_chunks_ranks_as_brute_force(exclude_seen: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import seqbench.measure.ranking as ranking

    rng = np.random.default_rng(1)
    users, items = 40, 103
    user_vectors = torch.from_numpy(rng.integers(-2, 3, size=(users, 3)).astype(np.float32))
    item_vectors = torch.from_numpy(rng.integers(-2, 3, size=(items + 1, 3)).astype(np.float32))
    bias = torch.from_numpy(rng.integers(-1, 2, size=items + 1).astype(np.float32))
    table = (user_vectors @ item_vectors[1:].T + bias[1:]).numpy()
    histories = [rng.integers(1, items + 1, size=rng.integers(1, 6)).tolist() for _ in range(users)]
    targets = rng.integers(1, items + 1, size=users)
    split = EvalSplit(np.arange(users), Ragged.from_lists(histories), targets)
    # Blocks of 16 users x 7 items: 15 chunks per batch, the target in one of them.
    monkeypatch.setattr(ranking, "SCORE_BLOCK_BYTES", ranking.BYTES_PER_SCORE * 16 * 7)
    assert ranking.block_shape(1024, items) == (16, 7)
    result = evaluate_split(LookupEncoder(user_vectors, item_vectors, bias), split, max_len=4,
                            device=torch.device("cpu"), exclude_seen=exclude_seen)
    expected = [brute_force_rank(table[u], int(targets[u]), histories[u], exclude_seen) for u in range(users)]
    assert result.ranks.tolist() == expected
    # A model with its own score_all is scored whole, never through the base-class chunks.
    fixed = evaluate_split(FixedScores(torch.from_numpy(table)), split, max_len=4, device=torch.device("cpu"), exclude_seen=exclude_seen)
    assert fixed.ranks.tolist() == expected
    item_vectors[5, 1] = float("nan")  # a diverged model is an error, not a flattering rank
    with pytest.raises(RuntimeFailure, match="NaN"):
        evaluate_split(LookupEncoder(user_vectors, item_vectors, bias), split, max_len=4, device=torch.device("cpu"))


def test_score_blocks_stay_bounded_whatever_the_catalogue() -> None:
    from seqbench.measure.ranking import BYTES_PER_SCORE, SCORE_BLOCK_BYTES, block_shape

    assert block_shape(1024, 12_101) == (1024, 12_101)  # Beauty: one block, as before
    for catalogue in (10**6, 10**7, 10**9):
        users, chunk = block_shape(1024, catalogue)
        assert users * chunk * BYTES_PER_SCORE <= SCORE_BLOCK_BYTES and users >= 16
