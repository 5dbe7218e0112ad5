"""Train / validation / test splits of chronological sequences (protocol.md, Splits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqbench.data.sequences import EvalSplit, Ragged
from seqbench.errors import InputError


@dataclass
class SplitResult:
    train_users: np.ndarray
    train: Ragged
    valid: EvalSplit
    test: EvalSplit
    users_dropped: int  # users that could not be evaluated (n < 3, or no history before a boundary)
    info: dict[str, Any] = field(default_factory=dict)


def prefixes(sequences: Ragged, lengths: np.ndarray) -> Ragged:
    """The first ``lengths[r]`` items of every row r (vectorised)."""
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), sequences.lengths)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    return Ragged(sequences.values[np.repeat(sequences.offsets[:-1], lengths) + within], offsets)


def leave_one_out(users: np.ndarray, sequences: Ragged) -> SplitResult:
    """Test target s_n, validation target s_{n-1}, training s_1..s_{n-2}; users with n < 3 dropped."""
    rows = np.flatnonzero(sequences.lengths >= 3)
    kept = sequences.take(rows)
    n = kept.lengths
    train = prefixes(kept, n - 2)
    valid = EvalSplit(users[rows], train, kept.values[kept.offsets[:-1] + n - 2])
    test = EvalSplit(users[rows], prefixes(kept, n - 1), kept.values[kept.offsets[1:] - 1])
    return SplitResult(users[rows], train, valid, test, int(len(sequences) - len(rows)), {"kind": "leave-one-out"})


def _cut(users: np.ndarray, sequences: Ragged, timestamps: Ragged, boundary: float) -> tuple[Ragged, Ragged, EvalSplit, np.ndarray, int]:
    """Events at or before ``boundary`` (per row), and the evaluation split of the events after it.

    Rows are chronological, so the events after the boundary are a suffix of each row; the target
    is the row's last event, the history everything at or before the boundary.
    """
    row_ids = np.repeat(np.arange(len(sequences), dtype=np.int64), sequences.lengths)
    before = np.bincount(row_ids[timestamps.values <= boundary], minlength=len(sequences)).astype(np.int64)
    has_after = before < sequences.lengths
    evaluable = has_after & (before >= 1)
    rows = np.flatnonzero(evaluable)
    history = prefixes(sequences.take(rows), before[rows])
    split = EvalSplit(users[rows], history, sequences.values[sequences.offsets[1:][rows] - 1])
    return prefixes(sequences, before), prefixes(timestamps, before), split, before, int((has_after & ~evaluable).sum())


def temporal(users: np.ndarray, sequences: Ragged, timestamps: Ragged, quantile: float = 0.95) -> SplitResult:
    """Global time split: test after the ``quantile`` of all timestamps, validation cut the same
    way from the events before it, training = the events before the validation boundary."""
    if timestamps is None:
        raise InputError("the temporal split needs timestamps, and this data set has none: use split kind leave-one-out")
    test_boundary = float(np.quantile(timestamps.values, quantile))
    part, part_times, test, _, dropped_test = _cut(users, sequences, timestamps, test_boundary)
    if len(part.values) == 0:
        raise InputError(f"no events before the temporal boundary (quantile {quantile}): raise the split quantile")
    valid_boundary = float(np.quantile(part_times.values, quantile))
    train_all, _, valid, before, dropped_valid = _cut(users, part, part_times, valid_boundary)
    rows = np.flatnonzero(before >= 1)
    if len(test) == 0 or len(valid) == 0:
        raise InputError(f"the temporal split at quantile {quantile} leaves no test or validation users: lower the quantile")
    info = {"kind": "temporal", "quantile": quantile, "test_boundary": test_boundary, "valid_boundary": valid_boundary,
            "test_users_without_history": dropped_test, "valid_users_without_history": dropped_valid}
    return SplitResult(users[rows], train_all.take(rows), valid, test, dropped_test, info)
