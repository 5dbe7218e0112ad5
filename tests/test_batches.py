"""Training windows and batches (seqbench.data.batches) against a naive per-user reference."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from seqbench.data.batches import TrainBatches, sample_ends
from seqbench.data.sequences import EvalSplit, Ragged
from seqbench.errors import InputError

SEQUENCES = [[1, 2, 3, 4, 5, 6, 7], [8], [9, 10], [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21], []]


def padded(items: list[int], width: int) -> list[int]:
    tail = items[-width:]
    return [0] * (width - len(tail)) + tail


def reference(sequences: list[list[int]], max_len: int, augment: str, stride: int | None = None) -> list[tuple[int, list[int]]]:
    """(row, window) of every training sample, the slow obvious way."""
    samples = []
    for row, items in enumerate(sequences):
        if len(items) < 2:
            continue
        if augment == "none":
            ends = [len(items)]
        elif augment == "prefixes":
            ends = list(range(2, len(items) + 1))
        else:
            step = stride or max_len
            ends = list(range(len(items), 1, -step))
        samples += [(row, padded(items[:end], max_len + 1)) for end in ends]
    return samples


def as_samples(batches: TrainBatches) -> list[tuple[int, list[int]]]:
    return list(zip(batches.rows.tolist(), batches.windows.tolist()))


@pytest.mark.parametrize("augment", ["none", "prefixes", "windows"])
@pytest.mark.parametrize("max_len", [1, 3, 50])
def test_windows_match_the_naive_reference(augment: str, max_len: int) -> None:
    batches = TrainBatches(Ragged.from_lists(SEQUENCES), max_len=max_len, batch_size=4, seed=0, augment=augment)
    assert sorted(as_samples(batches)) == sorted(reference(SEQUENCES, max_len, augment))


def test_window_stride_option() -> None:
    batches = TrainBatches(Ragged.from_lists(SEQUENCES), max_len=4, batch_size=4, seed=0, augment="windows", stride=2)
    assert sorted(as_samples(batches)) == sorted(reference(SEQUENCES, 4, "windows", stride=2))


def test_none_is_one_sample_per_user_ending_at_the_last_item() -> None:
    batches = TrainBatches(Ragged.from_lists(SEQUENCES), max_len=3, batch_size=10, seed=0)
    assert as_samples(batches) == [(0, [4, 5, 6, 7]), (2, [0, 0, 9, 10]), (3, [18, 19, 20, 21])]


def test_windows_cover_every_transition_of_long_histories() -> None:
    rng = np.random.default_rng(1)
    sequences = [rng.integers(1, 1000, size=int(n)).tolist() for n in rng.integers(2, 300, size=40)]
    batches = TrainBatches(Ragged.from_lists(sequences), max_len=50, batch_size=64, seed=0, augment="windows")
    seen = {(row, a, b) for row, window in as_samples(batches) for a, b in zip(window[:-1], window[1:]) if a}
    for row, items in enumerate(sequences):
        assert {(row, a, b) for a, b in zip(items[:-1], items[1:])} <= seen


def test_epochs_are_seeded_permutations() -> None:
    ragged = Ragged.from_lists([[i, i + 1, i + 2] for i in range(1, 1001)])
    batches = TrainBatches(ragged, max_len=5, batch_size=64, seed=7)
    epoch0 = [b.rows for b in batches.epoch(0)]
    assert len(epoch0) == len(batches) == 16 and [len(r) for r in epoch0][-1] == 1000 - 15 * 64
    order0 = torch.cat(epoch0)
    assert sorted(order0.tolist()) == list(range(1000))  # every sample exactly once
    assert torch.equal(order0, torch.cat([b.rows for b in TrainBatches(ragged, 5, 64, seed=7).epoch(0)]))
    assert not torch.equal(order0, torch.cat([b.rows for b in batches.epoch(1)]))
    assert not torch.equal(order0, torch.cat([b.rows for b in TrainBatches(ragged, 5, 64, seed=8).epoch(0)]))
    for batch in batches.epoch(0):  # windows travel with their rows
        assert torch.equal(batch.windows[:, -1], batch.rows + 3)
        assert batch.windows.dtype == torch.int64


def test_histories_are_whole_sequences_left_padded() -> None:
    batches = TrainBatches(Ragged.from_lists(SEQUENCES), max_len=2, batch_size=4, seed=0)
    assert batches.histories(torch.tensor([2, 0])).tolist() == [[0, 0, 0, 0, 0, 9, 10], [1, 2, 3, 4, 5, 6, 7]]


def test_eval_inputs_are_truncated_and_left_padded() -> None:
    split = EvalSplit(np.array([1, 2]), Ragged.from_lists([[1, 2, 3, 4], [5]]), np.array([9, 9]))
    assert split.inputs(3).tolist() == [[2, 3, 4], [0, 0, 5]]


def test_no_per_user_python_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building and iterating never touches rows one by one, and a large set takes well under a second."""
    def refuse(*_: object) -> None:
        raise AssertionError("per-row access inside the batch builder")

    monkeypatch.setattr(Ragged, "row", refuse)
    monkeypatch.setattr(Ragged, "to_lists", refuse)
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 40, size=50_000)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ragged = Ragged(rng.integers(1, 5000, size=int(offsets[-1])), offsets)
    list(TrainBatches(Ragged(np.array([1, 2]), np.array([0, 2])), 5, 1, 0).epoch(0))  # torch's first-call set-up
    start = time.process_time()  # CPU time: robust to other processes sharing the machine
    batches = TrainBatches(ragged, max_len=50, batch_size=256, seed=0)
    count = sum(len(batch.rows) for batch in batches.epoch(0))
    assert count == 50_000
    assert time.process_time() - start < 2.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch size must be >= 1"),
        ({"augment": "shuffle"}, "unknown augment 'shuffle'"),
        ({"augment": "windows", "stride": 0}, "window stride must be >= 1"),
    ],
)
def test_bad_batch_options(kwargs: dict, message: str) -> None:
    options = {"max_len": 3, "batch_size": 2, "seed": 0, **kwargs}
    with pytest.raises(InputError, match=message):
        TrainBatches(Ragged.from_lists(SEQUENCES), **options)


def test_too_sparse_to_train() -> None:
    with pytest.raises(InputError, match="no training sequence has 2 or more items"):
        TrainBatches(Ragged.from_lists([[1], [], [2]]), max_len=3, batch_size=2, seed=0)


def test_sample_ends_prefix_offsets() -> None:
    rows, ends = sample_ends(Ragged.from_lists([[1, 2, 3], [4, 5]]), max_len=3, augment="prefixes")
    assert rows.tolist() == [0, 0, 1] and ends.tolist() == [2, 3, 5]
