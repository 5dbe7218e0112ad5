"""Deduplication, iterated k-core, stable chronological order, id and attribute remapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqbench.data.filtering import (
    build_sequences,
    chronological,
    deduplicate,
    filter_interactions,
    kcore,
    remap_attributes,
)
from seqbench.data.registry import Recipe
from seqbench.errors import InputError


def frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"][: len(rows[0])])


def test_ties_keep_file_order_and_users_sort_by_id() -> None:
    data = frame([("b", "x", 5), ("a", "p", 9), ("b", "y", 5), ("a", "q", 1), ("b", "z", 3), ("a", "r", 9)])
    ordered = chronological(data)
    assert ordered["user"].tolist() == ["a", "a", "a", "b", "b", "b"]
    assert ordered["item"].tolist() == ["q", "p", "r", "z", "x", "y"]  # p before r and x before y: file order on ties


def test_without_timestamps_the_row_order_is_the_time_order() -> None:
    data = pd.DataFrame({"user": [2, 1, 2, 1], "item": [7, 8, 5, 6]})
    assert chronological(data)["item"].tolist() == [8, 6, 7, 5]


def test_dedup_modes() -> None:
    data = chronological(frame([(1, 10, 1), (1, 10, 1), (1, 10, 4), (1, 11, 2)]))
    assert len(deduplicate(data, "none")) == 4
    assert deduplicate(data, "exact")[["item", "timestamp"]].values.tolist() == [[10, 1], [11, 2], [10, 4]]
    assert deduplicate(data, "first")[["item", "timestamp"]].values.tolist() == [[10, 1], [11, 2]]


def test_kcore_cascades_until_stable() -> None:
    # Item 9 has 2 interactions (< 3): removing it leaves user "c" with 2 items, so "c" goes;
    # then item 8 drops to 2 interactions and goes too, which takes user "b" below 3 as well.
    rows = [(u, i) for u, i in [
        ("a", 1), ("a", 2), ("a", 3), ("a", 4),
        ("d", 1), ("d", 2), ("d", 3), ("d", 4),
        ("e", 1), ("e", 2), ("e", 3), ("e", 4),
        ("b", 8), ("b", 1), ("b", 9),
        ("c", 8), ("c", 9), ("c", 2),
        ("f", 8), ("f", 3), ("f", 4),
    ]]
    data = pd.DataFrame(rows, columns=["user", "item"])
    kept, iterations = kcore(data, 3, 3)
    assert sorted(kept["user"].unique()) == ["a", "d", "e"]
    assert sorted(kept["item"].unique()) == [1, 2, 3, 4]
    assert iterations >= 3  # needs several passes: one pass alone would keep item 8 and user b


def test_kcore_with_separate_user_and_item_k() -> None:
    data = pd.DataFrame({"user": [1, 1, 1, 2, 2, 3], "item": [1, 2, 3, 1, 2, 1]})
    kept, _ = kcore(data, user_k=2, item_k=2)  # user 3 (1 row) and item 3 (1 row) go
    assert kept.values.tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]
    kept, _ = kcore(data, user_k=1, item_k=3)  # only item 1 has 3 users
    assert kept.values.tolist() == [[1, 1], [2, 1], [3, 1]]


def naive_kcore(pairs: list[tuple[int, int]], user_k: int, item_k: int) -> set[tuple[int, int]]:
    rows = list(pairs)
    while True:
        users = pd.Series([u for u, _ in rows]).value_counts().to_dict() if rows else {}
        items = pd.Series([i for _, i in rows]).value_counts().to_dict() if rows else {}
        kept = [(u, i) for u, i in rows if users[u] >= user_k and items[i] >= item_k]
        if len(kept) == len(rows):
            return set(kept)
        rows = kept


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=80),
    st.integers(1, 4),
    st.integers(1, 4),
)
def test_kcore_matches_a_naive_fixed_point(pairs: list[tuple[int, int]], user_k: int, item_k: int) -> None:
    data = pd.DataFrame(pairs, columns=["user", "item"])
    kept, _ = kcore(data, user_k, item_k)
    assert set(map(tuple, kept.values.tolist())) == naive_kcore(pairs, user_k, item_k)
    if len(kept):
        assert kept["user"].value_counts().min() >= user_k and kept["item"].value_counts().min() >= item_k


def test_filter_reports_and_refuses_an_empty_result() -> None:
    data = frame([(1, 1, 1), (1, 1, 2), (1, 2, 3), (2, 1, 1)])
    kept, report = filter_interactions(data, Recipe(dedup="first", user_k=2, item_k=1), "tiny")
    assert report.duplicates_removed == 1 and report.users_removed_by_kcore == 1
    assert kept[["user", "item"]].values.tolist() == [[1, 1], [1, 2]]
    with pytest.raises(InputError, match="no users left after filtering tiny .*user_k=5.*lower k"):
        filter_interactions(data, Recipe(dedup="first", user_k=5, item_k=5), "tiny")


def test_empty_input_is_named_as_such() -> None:
    empty = pd.DataFrame({"user": pd.Series([], dtype=int), "item": pd.Series([], dtype=int)})
    with pytest.raises(InputError, match="the source files of tiny hold no interactions"):
        filter_interactions(empty, Recipe(user_k=0, item_k=0), "tiny")


def test_min_rating_needs_ratings() -> None:
    data = frame([(1, 1, 1)])
    with pytest.raises(InputError, match="has no ratings"):
        filter_interactions(data, Recipe(min_rating=4.0, user_k=0, item_k=0), "tiny")
    rated = data.assign(rating=[3.0])
    with pytest.raises(InputError, match="no users left"):
        filter_interactions(rated, Recipe(min_rating=4.0, user_k=0, item_k=0), "tiny")


def test_build_sequences_remaps_items_to_1_n_in_sorted_order() -> None:
    data = chronological(frame([("u2", 30, 1), ("u1", 20, 2), ("u1", 10, 1), ("u2", 20, 0)]))
    sequences = build_sequences(data)
    assert sequences.user_ids.tolist() == ["u1", "u2"]
    assert sequences.item_ids.tolist() == [10, 20, 30]
    assert sequences.items.to_lists() == [[1, 2], [2, 3]]
    assert sequences.timestamps is not None and sequences.timestamps.to_lists() == [[1, 2], [0, 1]]


def test_attributes_follow_the_item_remap_and_get_ids_1_a() -> None:
    item_ids = np.array([10, 20, 30])  # items 1, 2, 3
    pairs = pd.DataFrame({"item": [30, 10, 10, 99, 10, 20], "attribute": ["z", "m", "a", "only-dropped", "m", "a"]})
    attributes, originals = remap_attributes(pairs, item_ids)
    assert originals.tolist() == ["a", "m", "z"]  # the dropped item's attribute is not kept
    assert attributes.to_lists() == [[], [1, 2], [1], [3]]  # row 0 = padding; unique, sorted
