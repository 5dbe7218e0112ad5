"""SASRec (Kang and McAuley, 2018): causal self-attention over the item sequence.

Three published readings are presets of one model (``preset``); any field set explicitly overrides
its preset, and the resolved config (preset name included) is what the model records.

- ``s3rec`` (default): S3-Rec's fine-tuning code, which the CCE paper ran: 2 layers, 2 heads,
  GELU, FFN 4d, post-LayerNorm (eps 1e-12), item + position embedding then LayerNorm and dropout,
  no sqrt(d) scaling, dropout 0.5.
- ``original``: Kang and McAuley's code: 2 blocks, 1 head, FFN width d, ReLU, pre-norm queries,
  sqrt(d) embedding scaling, final LayerNorm (eps 1e-8), dropout 0.2.
- ``recbole``: RecBole's SASRec: 2 layers, 2 heads, inner 256, GELU, post-norm, dropout 0.5.
- ``xu``: Xu et al.'s code (CE-SCE-LLMRec, after SASRec.pytorch): ``original``'s layout with the
  attention residual from the raw input (``residual="raw"``), padding keys visible to attention
  (``pad_keys="visible"``) and Xavier initialisation (``init="xavier"``, see
  :func:`~seqbench.models.transformer.init_xavier_`).

The other presets initialise Linear/Embedding weights with N(0, ``init_std``) (the S3-Rec/RecBole
code), so the untrained model's full-softmax cross-entropy is close to ln N.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from seqbench.errors import InputError
from seqbench.models.base import SequentialRecommender
from seqbench.models.transformer import TransformerEncoder, init_normal_, init_xavier_

PRESETS: dict[str, dict[str, Any]] = {
    "s3rec": dict(
        num_layers=2, num_heads=2, inner_size=256, activation="gelu", norm_first=False,
        layer_norm_eps=1e-12, scale_embeddings=False, dropout=0.5, attn_dropout=0.5,
        init="normal", residual="normed", pad_keys="masked",
    ),
    "original": dict(
        num_layers=2, num_heads=1, inner_size=64, activation="relu", norm_first=True,
        layer_norm_eps=1e-8, scale_embeddings=True, dropout=0.2, attn_dropout=0.2,
        init="normal", residual="normed", pad_keys="masked",
    ),
    "recbole": dict(
        num_layers=2, num_heads=2, inner_size=256, activation="gelu", norm_first=False,
        layer_norm_eps=1e-12, scale_embeddings=False, dropout=0.5, attn_dropout=0.5,
        init="normal", residual="normed", pad_keys="masked",
    ),
    "xu": dict(
        num_layers=2, num_heads=1, inner_size=64, activation="relu", norm_first=True,
        layer_norm_eps=1e-8, scale_embeddings=True, dropout=0.2, attn_dropout=0.2,
        init="xavier", residual="raw", pad_keys="visible",
    ),
}
# The values each switch takes (the first is every preset's but ``xu``'s).
CHOICES: dict[str, tuple[str, ...]] = {
    "init": ("normal", "xavier"), "residual": ("normed", "raw"), "pad_keys": ("masked", "visible"),
}
_Config = TypeVar("_Config", bound="SASRecConfig")  # resolved() keeps a subclass (S3-Rec's config)


@dataclass
class SASRecConfig:
    """``None`` = taken from the preset. ``inner_size`` scales with ``hidden_size`` in the presets
    (4d for s3rec, d for original; RecBole's is a fixed 256)."""

    preset: str = "s3rec"
    hidden_size: int = 64
    num_layers: int | None = None
    num_heads: int | None = None
    inner_size: int | None = None
    activation: str | None = None
    norm_first: bool | None = None
    layer_norm_eps: float | None = None
    scale_embeddings: bool | None = None
    dropout: float | None = None
    attn_dropout: float | None = None
    init: str | None = None  # normal: N(0, init_std); xavier: Xu et al.'s code
    residual: str | None = None  # normed: q + Attn (Kang); raw: x + Attn (Xu, SASRec.pytorch); pre-norm only
    pad_keys: str | None = None  # masked; visible: padding keys attended to, as in Xu's code
    init_std: float = 0.02

    def resolved(self: _Config) -> _Config:
        """A copy with every ``None`` filled from the preset."""
        if self.preset not in PRESETS:
            raise InputError(f"unknown SASRec preset '{self.preset}': choose one of {', '.join(PRESETS)}")
        defaults = dict(PRESETS[self.preset])
        if self.preset == "s3rec":
            defaults["inner_size"] = 4 * self.hidden_size
        elif self.preset in ("original", "xu"):
            defaults["inner_size"] = self.hidden_size
        filled = {f.name: defaults[f.name] for f in fields(self) if getattr(self, f.name) is None}
        resolved = replace(self, **filled)
        for name, allowed in CHOICES.items():
            if getattr(resolved, name) not in allowed:
                raise InputError(f"unknown model.{name} '{getattr(resolved, name)}': choose one of {', '.join(allowed)}")
        return resolved


def build_encoder(config: SASRecConfig, num_tokens: int, max_len: int) -> TransformerEncoder:
    c = config.resolved()
    # resolved() filled every None from the preset
    assert c.num_layers is not None and c.num_heads is not None and c.inner_size is not None and c.activation is not None
    assert c.dropout is not None and c.attn_dropout is not None and c.layer_norm_eps is not None
    assert c.norm_first is not None and c.scale_embeddings is not None
    for name in ("hidden_size", "num_layers", "num_heads", "inner_size"):
        if getattr(c, name) < 1:
            raise InputError(f"{name} must be >= 1, got {getattr(c, name)}")
    return TransformerEncoder(
        num_tokens=num_tokens, max_len=max_len, hidden=c.hidden_size, layers=c.num_layers,
        heads=c.num_heads, inner=c.inner_size, activation=c.activation, dropout=c.dropout,
        attn_dropout=c.attn_dropout, eps=c.layer_norm_eps, norm_first=c.norm_first,
        scale_embeddings=c.scale_embeddings, raw_residual=c.residual == "raw", pad_keys_visible=c.pad_keys == "visible",
    )


class SASRec(SequentialRecommender):
    name: ClassVar[str] = "sasrec"
    Config: ClassVar[type] = SASRecConfig
    config: SASRecConfig  # resolved: no field left None
    target_positions: ClassVar[str] = "causal"
    relative_cost: ClassVar[float] = 2.0  # attention blocks: an epoch measured 1.5-2.2x GRU4Rec's (docs/performance.md)

    def __init__(self, config: SASRecConfig, num_items: int, max_len: int) -> None:
        resolved = config.resolved()
        super().__init__(resolved, num_items, max_len)
        self.encoder = build_encoder(resolved, num_items + 1, max_len)
        if resolved.init == "xavier":
            init_xavier_(self)
        else:
            init_normal_(self, resolved.init_std)

    @property
    def left_padding_free(self) -> bool:
        """Visible padding keys make the amount of padding part of the function: pad to max_len."""
        return not self.encoder.pad_keys_visible

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.encoder(input_ids, causal=True)

    def item_embeddings(self) -> Tensor:
        return self.encoder.items.weight

    def encode_last(self, histories: Tensor) -> Tensor:
        # Histories longer than max_len are cut to their most recent items, as at training time;
        # shorter ones are padded to max_len where padding is not inert.
        histories = histories[:, -self.max_len :]
        if not self.left_padding_free and histories.shape[1] < self.max_len:
            histories = torch.nn.functional.pad(histories, (self.max_len - histories.shape[1], 0))
        return self.forward(histories)[:, -1]
