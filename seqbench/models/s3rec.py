"""S3-Rec (Zhou et al., 2020): a SASRec-style encoder pre-trained with four self-supervised objectives.

The encoder is the ``s3rec`` SASRec preset (the paper's own code). Pre-training
(:mod:`seqbench.training.pretrain`) runs it bidirectionally on masked sequences and optimises

- AAP, associated attribute prediction: each unmasked item's hidden state predicts its attributes;
- MIP, masked item prediction: a masked position's hidden state ranks the true item above a
  sampled one;
- MAP, masked attribute prediction: a masked position's hidden state predicts the hidden item's
  attributes;
- SP, segment prediction: a sequence whose segment was masked ranks the true segment above a
  random one from another sequence;

weighted AAP 0.2, MIP 1.0, MAP 1.0, SP 0.5 (the published values). Fine-tuning then runs the same
module causally with whichever loss the run chose. The [MASK] token is item id N + 1: it has an
embedding row (learned in pre-training) but is never scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqbench.errors import InputError
from seqbench.models.base import SequentialRecommender
from seqbench.models.sasrec import SASRec, SASRecConfig, build_encoder
from seqbench.models.transformer import init_normal_


@dataclass
class S3RecConfig(SASRecConfig):
    aap_weight: float = 0.2
    mip_weight: float = 1.0
    map_weight: float = 1.0
    sp_weight: float = 0.5
    mask_prob: float = 0.2
    pretrain_batch_size: int = 100
    pretrain_lr: float = 1e-3
    # Pre-training epochs are the run's ``pretrain_epochs`` (the released checkpoints used 150 for
    # Beauty, LastFM and Toys, 100 for Sports and Yelp), not a model field.

    def weights(self) -> dict[str, float]:
        return {"aap": self.aap_weight, "mip": self.mip_weight, "map": self.map_weight, "sp": self.sp_weight}


@dataclass
class PretrainBatch:
    """One pre-training batch, built by :func:`seqbench.training.pretrain.make_batch`."""

    items: Tensor  # B x L original items (left-padded)
    masked_items: Tensor  # B x L with [MASK] at the masked positions
    item_mask: Tensor  # B x L bool, masked positions
    negatives: Tensor  # B x L sampled items for MIP (meaningful at masked positions)
    attributes: Tensor | None  # B x L x A multi-hot attributes of ``items`` (None: no attributes)
    segment_context: Tensor  # S x L sequences with one segment masked (rows with >= 2 items)
    segment_positive: Tensor  # S x L the true segment, [MASK] elsewhere
    segment_negative: Tensor  # S x L a random segment of equal length, [MASK] elsewhere


class S3Rec(SASRec):
    name: ClassVar[str] = "s3rec"
    Config: ClassVar[type] = S3RecConfig
    config: S3RecConfig
    target_positions: ClassVar[str] = "causal"
    relative_cost: ClassVar[float] = 2.0  # attention blocks: an epoch measured 1.5-2.2x GRU4Rec's (docs/performance.md)

    def __init__(self, config: S3RecConfig, num_items: int, max_len: int, num_attributes: int = 0) -> None:
        resolved = config.resolved()
        if not 0.0 < resolved.mask_prob <= 1.0:
            raise InputError(f"mask_prob must be in (0, 1], got {resolved.mask_prob}")
        if num_attributes < 0:
            raise InputError(f"num_attributes must be >= 0, got {num_attributes}")
        # SASRec's initialiser is skipped on purpose: S3-Rec's item table has the extra [MASK] row.
        SequentialRecommender.__init__(self, resolved, num_items, max_len)
        self.num_attributes = num_attributes
        self.mask_id = num_items + 1
        self.encoder = build_encoder(resolved, num_items + 2, max_len)
        hidden = resolved.hidden_size
        self.attributes = nn.Embedding(num_attributes + 1, hidden, padding_idx=0)
        self.aap_head = nn.Linear(hidden, hidden)
        self.mip_head = nn.Linear(hidden, hidden)
        self.map_head = nn.Linear(hidden, hidden)
        self.sp_head = nn.Linear(hidden, hidden)
        init_normal_(self, resolved.init_std)

    def item_embeddings(self) -> Tensor:
        return self.encoder.items.weight[: self.num_items + 1]

    def load_pretrained(self, state_dict: dict[str, Tensor]) -> None:
        """Start fine-tuning from pre-trained weights (every tensor must match: same data and config)."""
        self.load_state_dict(state_dict, strict=True)

    def pretrain_terms(self, batch: PretrainBatch) -> dict[str, tuple[Tensor, int]]:
        """Each objective's summed loss over its positions and how many positions that is."""
        hidden = self.encoder(batch.masked_items, causal=False)
        real = batch.items > 0
        terms = {"mip": self._mip(hidden, batch)}
        if batch.attributes is not None and self.num_attributes > 0:
            attr_table = self.attributes.weight[1:]
            unmasked = real & ~batch.item_mask
            terms["aap"] = _attribute_bce(self.aap_head(hidden[unmasked]), attr_table, batch.attributes[unmasked])
            masked = batch.item_mask
            terms["map"] = _attribute_bce(self.map_head(hidden[masked]), attr_table, batch.attributes[masked])
        terms["sp"] = self._sp(batch)
        return terms

    def _mip(self, hidden: Tensor, batch: PretrainBatch) -> tuple[Tensor, int]:
        query = self.mip_head(hidden[batch.item_mask])
        table = self.encoder.items.weight
        positive = (query * table[batch.items[batch.item_mask]]).sum(-1)
        negative = (query * table[batch.negatives[batch.item_mask]]).sum(-1)
        return F.softplus(negative - positive).sum(), int(query.shape[0])

    def _sp(self, batch: PretrainBatch) -> tuple[Tensor, int]:
        rows = batch.segment_context.shape[0]
        if rows == 0:
            return self.sp_head.weight.sum() * 0.0, 0
        stacked = torch.cat([batch.segment_context, batch.segment_positive, batch.segment_negative])
        last = self.encoder(stacked, causal=False)[:, -1]
        context, positive, negative = last[:rows], last[rows : 2 * rows], last[2 * rows :]
        query = self.sp_head(context)
        margin = (query * positive).sum(-1) - (query * negative).sum(-1)
        return F.softplus(-margin).sum(), rows


def _attribute_bce(query: Tensor, attr_table: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    """Multi-label BCE summed over attributes and positions (S3-Rec's sigmoid + BCELoss, stably)."""
    logits = query @ attr_table.T
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum"), int(query.shape[0])

