"""Real data from the offline mirror: exact statistics and independently recomputed splits.

Skipped when the mirror (../shared/datasets or $SEQBENCH_MIRROR) is absent.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from seqbench.data.prepare import prepare
from seqbench.data.sequences import load_prepared

# protocol.md: users / items / interactions of the CCE paper's five data sets
PAPER = {
    "beauty": (22363, 12101, 198502),
    "sports": (35598, 18357, 296337),
    "toys": (19412, 11924, 167597),
    "yelp": (30431, 20033, 316354),
    "lastfm": (1090, 3646, 52551),
}


def triple(stats: dict) -> tuple[int, int, int]:
    return stats["users"], stats["items"], stats["interactions"]


def test_lastfm_statistics_splits_and_attributes(mirror: Path, tmp_path: Path) -> None:
    stats = prepare("lastfm", tmp_path, mirror)
    assert triple(stats) == PAPER["lastfm"]
    dataset = load_prepared("lastfm", tmp_path)
    first = [int(x) for x in (mirror / "s3rec" / "LastFM.txt").read_text().splitlines()[0].split()]
    assert dataset.train.row(0).tolist() == first[1:-2]  # ids are already 1..N: kept as they are
    assert dataset.valid.targets[0] == first[-2] and dataset.test.targets[0] == first[-1]
    assert dataset.test.histories.row(0).tolist() == first[1:-1]
    attributes = json.loads((mirror / "s3rec" / "LastFM_item2attributes.json").read_text())
    assert dataset.num_attributes == 388 and dataset.item_attributes is not None
    for item in (1, 17, 3646):
        assert dataset.item_attributes.row(item).tolist() == sorted(set(attributes[str(item)]))
    assert dataset.meta["sources"][0]["sha256"] == "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802"


def test_the_cce_papers_five_data_sets(mirror: Path, tmp_path: Path) -> None:
    for name, expected in PAPER.items():
        assert triple(prepare(name, tmp_path, mirror)) == expected, name
        dataset = load_prepared(name, tmp_path)
        assert len(dataset.test) == expected[0] and dataset.meta["users_dropped"] == 0
        assert len(dataset.train.values) + 2 * len(dataset.test) == expected[2]


def naive_movielens(path: Path, k: int) -> dict[int, list[tuple[int, int]]]:
    """Per user, (timestamp, movie) in time order (ties by file order), after iterated k-core."""
    rows = [(int(r["userId"]), int(r["movieId"]), int(r["timestamp"])) for r in csv.DictReader(path.open())]
    while True:
        users = Counter(u for u, _, _ in rows)
        items = Counter(i for _, i, _ in rows)
        kept = [r for r in rows if users[r[0]] >= k and items[r[1]] >= k]
        if len(kept) == len(rows):
            break
        rows = kept
    sequences: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for user, item, stamp in rows:  # file order; sorted() below is stable
        sequences[user].append((stamp, item))
    return {u: sorted(s, key=lambda event: event[0]) for u, s in sorted(sequences.items())}


def test_ml_latest_small_five_core_both_splits(mirror: Path, tmp_path: Path) -> None:
    ratings = mirror / "raw" / "ml-latest-small" / "ratings.csv"
    expected = naive_movielens(ratings, 5)
    items = sorted({item for seq in expected.values() for _, item in seq})
    stats = prepare("ml-latest-small", tmp_path, mirror)
    assert triple(stats) == (610, 3650, 90274) == (len(expected), len(items), sum(map(len, expected.values())))

    dataset = load_prepared("ml-latest-small", tmp_path)
    original = pq.read_table(tmp_path / "ml-latest-small" / "items.parquet").column("original_id").to_pylist()
    assert original == [str(i) for i in items]
    to_movie = np.array([0] + items)
    sequences = list(expected.values())
    assert [to_movie[r].tolist() for r in dataset.test.histories.to_lists()] == [[i for _, i in s[:-1]] for s in sequences]
    assert to_movie[dataset.test.targets].tolist() == [s[-1][1] for s in sequences]
    assert to_movie[dataset.valid.targets].tolist() == [s[-2][1] for s in sequences]
    assert dataset.num_attributes == 19 and dataset.meta["filtering"]["users_removed_by_kcore"] == 0

    temporal = prepare("ml-latest-small-temporal", tmp_path, mirror)
    assert triple(temporal) == triple(stats)
    split = load_prepared("ml-latest-small-temporal", tmp_path)
    stamps = np.array([t for s in sequences for t, _ in s])
    boundary = np.quantile(stamps, 0.95)
    test_users = [u for u, s in enumerate(sequences, start=1) if s[-1][0] > boundary and s[0][0] <= boundary]
    assert split.test.users.tolist() == test_users and len(test_users) == 20
    assert to_movie[split.test.targets].tolist() == [sequences[u - 1][-1][1] for u in test_users]
    assert all(to_movie[h].tolist() == [i for t, i in sequences[u - 1] if t <= boundary]
               for u, h in zip(test_users, split.test.histories.to_lists()))
    assert split.meta["split"]["test_boundary"] == pytest.approx(boundary)
    valid_boundary = split.meta["split"]["valid_boundary"]
    assert valid_boundary < boundary and len(split.valid) > 0
    assert split.train.values.size == int((stamps <= valid_boundary).sum())
