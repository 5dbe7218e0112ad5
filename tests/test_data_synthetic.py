"""The built-in synthetic data set: seeded, sized as asked, learnable, attributes with signal."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from seqbench.data.prepare import prepare
from seqbench.data.registry import SyntheticParams
from seqbench.data.sequences import PreparedDataset, load_prepared
from seqbench.data.synthetic import generate


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, attrs_a = generate(SyntheticParams(users=200, items=60, length=10, seed=3))
    b, attrs_b = generate(SyntheticParams(users=200, items=60, length=10, seed=3))
    c, _ = generate(SyntheticParams(users=200, items=60, length=10, seed=4))
    assert a.equals(b) and attrs_a.equals(attrs_b)
    assert not a.equals(c)


def test_sizes_follow_the_parameters() -> None:
    frame, attributes = generate(SyntheticParams(users=500, items=120, length=20, seed=0))
    lengths = frame.groupby("user").size()
    assert len(lengths) == 500 and lengths.min() >= 5
    assert 15 <= lengths.mean() <= 25
    assert frame["item"].min() >= 1 and frame["item"].max() <= 120
    assert set(attributes["item"]) == set(range(1, 121))


def hit_rate_at_10(scores: np.ndarray, dataset: PreparedDataset) -> float:
    """Full-ranking HR@10 on the test split, history items masked except the target."""
    scores = scores.astype(np.float64).copy()
    targets = dataset.test.targets
    target_scores = scores[np.arange(len(targets)), targets]  # the target is never masked
    rows, items = dataset.test.histories.coo()
    scores[rows, items] = -np.inf
    scores[np.arange(len(targets)), targets] = target_scores
    scores[:, 0] = -np.inf
    rank = (scores > target_scores[:, None]).sum(axis=1) + (scores == target_scores[:, None]).sum(axis=1) - 1
    return float((rank < 10).mean())


def test_a_sequential_model_beats_popularity_by_far(tmp_path: Path) -> None:
    start = time.perf_counter()
    prepare("synthetic", tmp_path)
    assert time.perf_counter() - start < 10  # "a few seconds"
    dataset = load_prepared("synthetic", tmp_path)
    markov_hr, pop_hr = _first_order_and_popularity_hr(dataset)
    print(f"HR@10 first-order {markov_hr:.3f} vs popularity {pop_hr:.3f}")
    assert markov_hr > 0.3 and markov_hr > 3 * pop_hr, (markov_hr, pop_hr)


def _first_order_and_popularity_hr(dataset: PreparedDataset) -> tuple[float, float]:
    n = dataset.num_items + 1
    # A first-order model (bigram counts over the training sequences) as the simplest learner.
    train = dataset.train
    same_user = np.repeat(np.arange(len(train)), train.lengths)
    pairs = same_user[:-1] == same_user[1:]
    bigram = np.zeros((n, n))
    np.add.at(bigram, (train.values[:-1][pairs], train.values[1:][pairs]), 1.0)
    last = dataset.test.histories.values[dataset.test.histories.offsets[1:] - 1]
    popularity = dataset.item_counts().astype(np.float64)
    pop_scores = np.tile(popularity, (len(last), 1))
    markov_scores = bigram[last] + 1e-6 * popularity  # popularity only breaks ties
    return hit_rate_at_10(markov_scores, dataset), hit_rate_at_10(pop_scores, dataset)


def test_attributes_carry_the_sequential_structure(tmp_path: Path) -> None:
    prepare("synthetic", tmp_path)
    dataset = load_prepared("synthetic", tmp_path)
    assert dataset.item_attributes is not None and dataset.num_attributes > 10
    sets = [set(row) for row in dataset.item_attributes.to_lists()]
    train = dataset.train
    same_user = np.repeat(np.arange(len(train)), train.lengths)
    pairs = same_user[:-1] == same_user[1:]
    before, after = train.values[:-1][pairs], train.values[1:][pairs]
    shared_next = np.mean([bool(sets[a] & sets[b]) for a, b in zip(before[:5000], after[:5000])])
    rng = np.random.default_rng(0)
    random_pairs = rng.integers(1, dataset.num_items + 1, size=(5000, 2))
    shared_random = np.mean([bool(sets[a] & sets[b]) for a, b in random_pairs])
    assert shared_next > 2 * shared_random, (shared_next, shared_random)


def test_a_full_catalogue_holds_every_item_even_those_nobody_picked(tmp_path: Path) -> None:
    params = {"users": "300", "items": "20000", "length": "10", "catalog": "full"}
    row = prepare("synthetic", tmp_path, params=params)
    dataset = load_prepared("synthetic", tmp_path)
    assert row["items"] == dataset.num_items == 20000  # 3,000 interactions cannot touch them all
    picked = np.unique(np.concatenate([dataset.train.values, dataset.valid.targets, dataset.test.targets]))
    share = dataset.meta["synthetic"]["never_interacted_share"]
    assert 0.5 < share < 1 and share == round(1 - len(picked) / 20000, 6)
    assert dataset.item_attributes is not None and len(dataset.item_attributes) == 20001  # row 0 = padding
    # Asked again with the same parameters: already prepared (the derived share is not a parameter).
    assert prepare("synthetic", tmp_path, params=params)["status"] == "already prepared"


def test_full_catalogue_successors_stay_in_their_cluster_and_are_learnable(tmp_path: Path) -> None:
    from seqbench.data.synthetic import SUCCESSORS, _successors_vectorised

    rng = np.random.default_rng(0)
    cluster = rng.integers(0, 40, size=1000)
    popularity = np.full(1000, 1e-3)
    table, cumulative = _successors_vectorised(rng, cluster, popularity)
    assert table.shape == (1000, SUCCESSORS) and np.allclose(cumulative[:, -1], 1.0)
    assert (cluster[table[:, :-1]] == cluster[:, None]).all()
    prepare("synthetic", tmp_path, params={"catalog": "full"})
    dataset = load_prepared("synthetic", tmp_path)
    assert dataset.num_items == 500
    markov_hr, pop_hr = _first_order_and_popularity_hr(dataset)
    assert markov_hr > 0.3 and markov_hr > 3 * pop_hr, (markov_hr, pop_hr)
