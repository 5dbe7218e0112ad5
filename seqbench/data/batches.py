"""Training samples as padded tensors, built with numpy index arithmetic (no per-user Python loop).

A training sample is a window of ``max_len + 1`` consecutive items of a user's training sequence,
left-padded with 0; the model turns it into inputs and targets (a causal model shifts it by one,
BERT4Rec masks it). Which windows exist is the ``augment`` option of the protocol:

- ``none`` (default): one window per user, ending at the last training item.
- ``prefixes``: one window per prefix of length >= 2 (RecBole style).
- ``windows``: windows ending at the last item, then every ``stride`` items earlier, so that long
  histories are seen in full by all-timestamp losses.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from seqbench.data import AUGMENTATIONS
from seqbench.data.sequences import Ragged, windows_ending_at
from seqbench.errors import InputError

# The length sampler sorts samples by length within pools of this many batches: batches of
# similar lengths (little padding) while each epoch still mixes the whole data set.
POOL_BATCHES = 16


@dataclass
class TrainBatch:
    windows: torch.Tensor  # B x (max_len + 1), int64, left-padded
    rows: torch.Tensor  # B, index of each sample's user in the training sequences


def sample_ends(sequences: Ragged, max_len: int, augment: str = "none", stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(row, end offset) of every training window; ``end`` is exclusive, in ``sequences.values``."""
    starts, ends, lengths = sequences.offsets[:-1], sequences.offsets[1:], sequences.lengths
    rows = np.arange(len(sequences), dtype=np.int64)
    keep = lengths >= 2  # a window needs an input and a target
    if augment == "none":
        return rows[keep], ends[keep]
    if augment == "prefixes":
        counts = np.maximum(lengths - 1, 0)  # prefixes of length 2..n
        sample_rows = np.repeat(rows, counts)
        first = np.repeat(starts + 2 - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        return sample_rows, first + np.arange(counts.sum(), dtype=np.int64)
    if augment == "windows":
        step = max_len if stride is None else stride  # an explicit 0 is an error, not "default"
        if step < 1:
            raise InputError(f"window stride must be >= 1, got {step}: set augment_stride to a positive integer")
        counts = np.where(keep, (np.maximum(lengths - 2, 0) // step) + 1, 0)
        sample_rows = np.repeat(rows, counts)
        back = np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        return sample_rows, np.repeat(ends, counts) - back * step
    raise InputError(f"unknown augment '{augment}': choose one of {', '.join(AUGMENTATIONS)}")


class TrainBatches:
    """Shuffled mini-batches of training windows; each epoch has its own seeded order."""

    def __init__(
        self,
        sequences: Ragged,
        max_len: int,
        batch_size: int,
        seed: int,
        augment: str = "none",
        stride: int | None = None,
        sampler: str = "random",
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        self.sequences = sequences
        self.max_len = max_len
        self.batch_size = batch_size
        self.seed = seed
        self.rows, ends = sample_ends(sequences, max_len, augment, stride)
        self.windows = windows_ending_at(sequences.values, sequences.offsets[self.rows], ends, max_len + 1)
        self.sampler = sampler
        self.lengths = (self.windows > 0).sum(axis=1)
        if len(self.rows) == 0:
            raise InputError("no training sequence has 2 or more items: the data set is too sparse to train on")

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.rows)

    def epoch(self, epoch: int) -> Iterator[TrainBatch]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.rows))
        windows = torch.from_numpy(self.windows)
        rows = torch.from_numpy(self.rows)
        for batch in self._by_length(order, rng) if self.sampler == "length" else self._in_order(order):
            index = torch.from_numpy(batch)
            yield TrainBatch(windows=windows[index], rows=rows[index])

    def _in_order(self, order: np.ndarray) -> list[np.ndarray]:
        return [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]

    def _by_length(self, order: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """Shuffled samples sorted by length within each pool, cut into batches, batches shuffled."""
        pool = POOL_BATCHES * self.batch_size
        batches: list[np.ndarray] = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            batches += self._in_order(chunk[np.argsort(self.lengths[chunk], kind="stable")])
        return [batches[i] for i in rng.permutation(len(batches))]

    def histories(self, rows: torch.Tensor) -> torch.Tensor:
        """Each row's whole training sequence, left-padded to the longest in the batch (B x H)."""
        sub = self.sequences.take(rows.numpy())
        width = max(int(sub.lengths.max(initial=1)), 1)
        return torch.from_numpy(windows_ending_at(sub.values, sub.offsets[:-1], sub.offsets[1:], width))
