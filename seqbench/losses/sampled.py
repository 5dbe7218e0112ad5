"""Shared machinery of the losses that score the positive against K sampled negatives.

A subclass declares its ``Params`` (a ``SamplerParams`` dataclass with its own defaults) and
implements ``per_position(pos, neg, negatives)`` on the n positive logits and n x K negative logits.
"""

from __future__ import annotations

import abc

import numpy as np
import torch
from torch import Tensor

from seqbench.errors import InputError
from seqbench.losses.base import (
    Loss,
    LossBatch,
    LossOutput,
    Positions,
    gather_selected,
    zero_loss,
)
from seqbench.losses.samplers import (
    Negatives,
    SamplerParams,
    draw_negatives,
    popularity_probs,
)
from seqbench.losses.scoring import sampled_scores


class SampledLoss(Loss):
    params: SamplerParams
    needs_negatives = True
    wants_log_q = False  # set by losses that apply a logQ correction

    def __init__(
        self,
        params: SamplerParams,
        num_items: int,
        positions: Positions | None = None,
        item_counts: np.ndarray | None = None,
    ) -> None:
        super().__init__(params, num_items, positions, item_counts)
        self._probs: Tensor | None = None
        if params.sampler == "popularity":
            if item_counts is None:
                raise InputError(f"{self.name}: sampler=popularity needs item counts (valid samplers without: uniform)")
            # Validated now so a bad count array fails at build time, not at the first step.
            self._probs_cpu = popularity_probs(item_counts, num_items, params.pop_power, torch.device("cpu"))

    def _popularity(self, device: torch.device) -> Tensor | None:
        if self.params.sampler != "popularity":
            return None
        if self._probs is None or self._probs.device != device:
            self._probs = self._probs_cpu.to(device)
        return self._probs

    @abc.abstractmethod
    def per_position(self, pos: Tensor, neg: Tensor, negatives: Negatives) -> Tensor:
        """Per-position loss from positive scores (n) and negative scores (n x K)."""

    def compute(self, batch: LossBatch, mask: Tensor) -> LossOutput:
        selected = gather_selected(batch, mask)
        if selected.count == 0:
            return LossOutput(zero_loss(batch), lambda: {"positions": 0.0})
        probs = self._popularity(selected.targets.device)
        negatives = draw_negatives(self.params, selected, batch, self.num_items, probs, self.wants_log_q)
        x, table, bias = selected.hidden, batch.item_embeddings, batch.item_bias
        # Positive and negatives scored in one call, so the table's gradient is built once
        # (two (N + 1) x d gradients and their sum would dominate memory at large N).
        items = torch.cat([selected.targets[:, None], negatives.items], dim=1)
        scores = sampled_scores(x, table, bias, items)
        pos, neg = scores[:, 0], scores[:, 1:]
        value = self.per_position(pos, neg, negatives).mean()
        pos, neg, count = pos.detach(), neg.detach(), selected.count
        return LossOutput(value, lambda: {
            "positions": float(count),
            "mean_positive_logit": float(pos.mean()),
            "mean_negative_logit": float(neg.mean()),
        })
