"""Leave-one-out and the temporal global-quantile split on hand-checked inputs."""

from __future__ import annotations

import numpy as np
import pytest

from seqbench.data.sequences import Ragged
from seqbench.data.splits import leave_one_out, prefixes, temporal
from seqbench.errors import InputError


def test_leave_one_out_targets_and_dropped_short_users() -> None:
    sequences = Ragged.from_lists([[1, 2, 3, 4], [5, 6], [7, 8, 9], [2]])
    users = np.array([1, 2, 3, 4])
    split = leave_one_out(users, sequences)
    assert split.users_dropped == 2
    assert split.train_users.tolist() == [1, 3]
    assert split.train.to_lists() == [[1, 2], [7]]
    assert split.valid.histories.to_lists() == [[1, 2], [7]] and split.valid.targets.tolist() == [3, 8]
    assert split.test.histories.to_lists() == [[1, 2, 3], [7, 8]] and split.test.targets.tolist() == [4, 9]
    assert split.test.users.tolist() == [1, 3]


def test_prefixes_are_vectorised_row_heads() -> None:
    sequences = Ragged.from_lists([[1, 2, 3], [4], [5, 6]])
    assert prefixes(sequences, np.array([2, 0, 5])).to_lists() == [[1, 2], [], [5, 6]]


def test_temporal_split_by_global_quantiles() -> None:
    # Timestamps 1..20 over three users; quantile 0.75 of 1..20 is 15.25, so test events are > 15.25.
    sequences = Ragged.from_lists([[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14], [15, 16, 17, 18, 19, 20]])
    times = Ragged.from_lists([[1, 2, 3, 4, 5, 6, 7, 16], [8, 9, 10, 11, 12, 13], [14, 15, 17, 18, 19, 20]])
    split = temporal(np.array([1, 2, 3]), sequences, times, quantile=0.75)
    assert split.info["test_boundary"] == pytest.approx(15.25)
    # test: user 1 (target its last event, history its events before the boundary) and user 3
    assert split.test.users.tolist() == [1, 3]
    assert split.test.targets.tolist() == [8, 20]
    assert split.test.histories.to_lists() == [[1, 2, 3, 4, 5, 6, 7], [15, 16]]
    # validation: the same cut on the 15 events at or before 15.25 (times 1..15): quantile 11.5
    assert split.info["valid_boundary"] == pytest.approx(11.5)
    # user 2's events at 12 and 13 are after it (target: the last, item 14); user 3's two events
    # (14, 15) are all after it, so user 3 has no validation history and is not evaluated there.
    assert split.valid.users.tolist() == [2]
    assert split.valid.targets.tolist() == [14]
    assert split.valid.histories.to_lists() == [[9, 10, 11, 12]]
    assert split.info["valid_users_without_history"] == 1 and split.info["test_users_without_history"] == 0
    # training: everything at or before the validation boundary, users with at least one event
    assert split.train_users.tolist() == [1, 2]
    assert split.train.to_lists() == [[1, 2, 3, 4, 5, 6, 7], [9, 10, 11, 12]]


def test_temporal_needs_timestamps() -> None:
    with pytest.raises(InputError, match="needs timestamps"):
        temporal(np.array([1]), Ragged.from_lists([[1, 2, 3]]), None)  # type: ignore[arg-type]
