"""The one interface every sequential recommender implements.

A model maps left-padded item sequences (B x L, 0 = padding) to hidden states at every position
(B x L x d), scores items with its tied item-embedding table, and says how a training window
(B x (L + 1) consecutive items) becomes inputs and per-position targets: a causal model shifts it
by one, BERT4Rec masks it (its targets are non-zero at masked positions only, so any loss with
positions ``all`` trains on exactly the masked positions).

Adding a model = one file with a ``SequentialRecommender`` subclass + one registry line.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
from torch import Tensor, nn


class SequentialRecommender(nn.Module, abc.ABC):
    name: ClassVar[str]
    Config: ClassVar[type]  # a dataclass with the model's published defaults
    # "causal": targets at every input position; "masked": targets only where the input was masked
    target_positions: ClassVar[str] = "causal"
    # Training work per position relative to GRU4Rec's, roughly: only orders a grid's runs
    # (the longest first, so that parallel runs end together), never changes a result.
    relative_cost: ClassVar[float] = 1.0
    # Raise when an edit changes what the model computes: runs stored before then get new run ids.
    code_version: ClassVar[int] = 1

    def __init__(self, config: object, num_items: int, max_len: int) -> None:
        super().__init__()
        self.config = config
        self.num_items = num_items
        self.max_len = max_len

    @property
    def left_padding_free(self) -> bool:
        """Extra left padding changes no real position's output (right-aligned positions, packed
        recurrences): lets evaluation and the length sampler cut batches to their longest sequence.
        A model whose answer depends on its config overrides this property."""
        return True

    @abc.abstractmethod
    def forward(self, input_ids: Tensor) -> Tensor:
        """B x L int64 (0 = padding) -> B x L x d hidden states."""

    @abc.abstractmethod
    def item_embeddings(self) -> Tensor:
        """(N + 1) x d table used for scoring (row 0 = padding), tied with the input embeddings."""

    def item_bias(self) -> Tensor | None:
        return None

    def training_batch(self, windows: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Causal default: inputs = window[:-1], targets = window[1:] where the input is real."""
        inputs, targets = windows[:, :-1], windows[:, 1:]
        return inputs, torch.where(inputs > 0, targets, torch.zeros_like(targets))

    def encode_last(self, histories: Tensor) -> Tensor:
        """B x L left-padded histories -> B x d representation used to rank the next item."""
        return self.forward(histories)[:, -1]

    def score_all(self, hidden: Tensor) -> Tensor:
        """B x d -> B x N scores of items 1..N (the padding column is excluded)."""
        return self.score_items(hidden, 0, self.num_items)

    def score_items(self, hidden: Tensor, start: int, stop: int) -> Tensor:
        """B x d -> B x (stop - start) scores of items start+1..stop: evaluation over a catalogue
        too large for one block of scores goes through it chunk by chunk."""
        scores = hidden @ self.item_embeddings()[1 + start : 1 + stop].T
        bias = self.item_bias()
        return scores if bias is None else scores + bias[1 + start : 1 + stop]

    def score_targets(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """B x d, B item ids -> the B scores of each row's own target (same formula as score_items)."""
        scores = (hidden * self.item_embeddings()[targets]).sum(dim=1)
        bias = self.item_bias()
        return scores if bias is None else scores + bias[targets]
