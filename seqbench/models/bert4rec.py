"""BERT4Rec (Sun et al., 2019): a bidirectional transformer trained by cloze (masked items).

Architecture as in the paper's code: item + position embedding, LayerNorm, dropout, post-norm
blocks (2 layers, 2 heads, GELU, FFN 4d, dropout 0.1), then the output transform (dense, GELU,
LayerNorm) and scores = h E^T + b with E tied to the input table and a per-item output bias.

The [MASK] token is id N + 1: it has an input embedding row but is never scored, so
``item_embeddings()`` returns rows 0..N only. Training masks each real position with probability
``mask_prob`` (at least one per non-empty sequence) and puts targets only there
(``target_positions = "masked"``). Evaluation appends a [MASK] after the history and reads it out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqbench.errors import InputError
from seqbench.models.base import SequentialRecommender
from seqbench.models.transformer import TransformerEncoder, init_normal_


@dataclass
class BERT4RecConfig:
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int | None = None  # None = 4 x hidden_size
    dropout: float = 0.1
    attn_dropout: float = 0.1
    mask_prob: float = 0.2
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02


class BERT4Rec(SequentialRecommender):
    name: ClassVar[str] = "bert4rec"
    Config: ClassVar[type] = BERT4RecConfig
    config: BERT4RecConfig
    target_positions: ClassVar[str] = "masked"
    relative_cost: ClassVar[float] = 2.0  # attention blocks: an epoch measured 1.5-2.2x GRU4Rec's (docs/performance.md)

    def __init__(self, config: BERT4RecConfig, num_items: int, max_len: int) -> None:
        inner_size = 4 * config.hidden_size if config.inner_size is None else config.inner_size
        config = replace(config, inner_size=inner_size)
        if not 0.0 < config.mask_prob <= 1.0:
            raise InputError(f"mask_prob must be in (0, 1], got {config.mask_prob}")
        if max_len < 2:
            raise InputError(f"BERT4Rec needs max_len >= 2 (history plus the appended [MASK]), got {max_len}")
        super().__init__(config, num_items, max_len)
        self.mask_id = num_items + 1
        self.encoder = TransformerEncoder(
            num_tokens=num_items + 2, max_len=max_len, hidden=config.hidden_size, layers=config.num_layers,
            heads=config.num_heads, inner=inner_size, activation="gelu", dropout=config.dropout,
            attn_dropout=config.attn_dropout, eps=config.layer_norm_eps, norm_first=False,
            scale_embeddings=False,
        )
        self.transform = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.output_bias = nn.Parameter(torch.zeros(num_items + 1))
        init_normal_(self, config.init_std)

    def forward(self, input_ids: Tensor) -> Tensor:
        x = self.encoder(input_ids, causal=False)
        x = self.transform_norm(F.gelu(self.transform(x)))
        return x * (input_ids > 0).unsqueeze(-1).to(x.dtype)

    def item_embeddings(self) -> Tensor:
        return self.encoder.items.weight[: self.num_items + 1]

    def item_bias(self) -> Tensor:
        return self.output_bias

    def mask_positions(self, items: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Boolean B x L: which real positions to mask; every non-empty row gets at least one."""
        real = items > 0
        draw = torch.rand(items.shape, generator=generator, device=items.device)
        masked = (draw < self.config.mask_prob) & real
        # Rows left without a mask get one at a uniformly random real position (largest draw).
        fallback = torch.where(real, draw, -1.0).argmax(dim=1)
        needs = ~masked.any(dim=1) & real.any(dim=1)
        masked[needs, fallback[needs]] = True
        return masked

    def training_batch(self, windows: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        items = windows[:, -self.max_len :]  # the most recent max_len items of the window
        masked = self.mask_positions(items, generator)
        inputs = torch.where(masked, torch.full_like(items, self.mask_id), items)
        return inputs, torch.where(masked, items, torch.zeros_like(items))

    def encode_last(self, histories: Tensor) -> Tensor:
        keep = min(histories.shape[1], self.max_len - 1)
        mask = torch.full_like(histories[:, :1], self.mask_id)
        inputs = torch.cat([histories[:, histories.shape[1] - keep :], mask], dim=1)
        return self.forward(inputs)[:, -1]
