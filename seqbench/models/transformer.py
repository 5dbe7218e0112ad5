"""Transformer pieces shared by SASRec, BERT4Rec and S3-Rec.

One block covers both published layouts:

- post-norm (BERT / S3-Rec code): ``x = LN(x + Attn(x))``, ``x = LN(x + FFN(x))``.
- pre-norm as in Kang and McAuley's SASRec code, where the residual is taken from the *normalised*
  input: ``q = LN(x); x = q + Attn(q, x, x)``, ``y = LN(x); x = y + FFN(y)``.

Positions are right-aligned: the last column of a left-padded B x L input always gets position
``max_len - 1``. With inputs padded to ``max_len`` this is exactly the published indexing, and it
makes extra left padding a no-op for the real positions.

Two details of Xu et al.'s SASRec code (and of SASRec.pytorch) differ from Kang's layout and are
switches here: the attention residual taken from the raw input (``raw_residual``: ``x = x +
Attn(LN(x), x, x)``), and padding keys left visible to attention (``pad_keys_visible``): the pads
are zeroed after the embedding and after every block, so each pad is a key with the projections'
bias only, a "null" the attention can spend weight on. With visible pads the padding is no longer
inert, so inputs must be padded to ``max_len`` (the model is then not ``left_padding_free``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqbench.errors import InputError

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"gelu": F.gelu, "relu": F.relu}


def attention_mask(input_ids: Tensor, causal: bool, pad_keys_visible: bool = False) -> Tensor:
    """Boolean B x 1 x L x L mask, True = may attend.

    Keys that are padding are hidden unless ``pad_keys_visible``; every query may always see
    itself, so that no row is fully masked (a padding query would otherwise produce NaN; its
    output is zeroed afterwards anyway).
    """
    length = input_ids.shape[1]
    allowed = torch.ones_like(input_ids, dtype=torch.bool) if pad_keys_visible else input_ids > 0
    allowed = allowed[:, None, None, :]
    if causal:
        lower = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
        allowed = allowed & lower
    eye = torch.eye(length, dtype=torch.bool, device=input_ids.device)
    return allowed | eye


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, attn_dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise InputError(f"hidden_size {hidden} is not divisible by num_heads {heads}")
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout = attn_dropout

    def _split(self, x: Tensor) -> Tensor:
        batch, length, hidden = x.shape
        return x.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

    def forward(self, queries: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        q, k, v = self._split(self.query(queries)), self._split(self.key(keys)), self._split(self.value(keys))
        dropout = self.attn_dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        batch, _, length, _ = context.shape
        return self.out(context.transpose(1, 2).reshape(batch, length, -1))


class FeedForward(nn.Module):
    """Point-wise FFN; ``inner_dropout`` is the extra dropout SASRec's code puts after the first layer."""

    def __init__(self, hidden: int, inner: int, activation: str, inner_dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)
        self.activation = ACTIVATIONS[activation]
        self.inner_dropout = nn.Dropout(inner_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.activation(self.inner_dropout(self.fc1(x))))


class TransformerBlock(nn.Module):
    def __init__(
        self,
        hidden: int,
        heads: int,
        inner: int,
        activation: str,
        dropout: float,
        attn_dropout: float,
        eps: float,
        norm_first: bool,
        raw_residual: bool = False,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.raw_residual = raw_residual
        self.attention = MultiHeadSelfAttention(hidden, heads, attn_dropout)
        self.ffn = FeedForward(hidden, inner, activation, dropout if norm_first else 0.0)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.norm_first:
            # Kang and McAuley's code drops out attention weights only, not the attention output.
            q = self.attn_norm(x)
            x = (x if self.raw_residual else q) + self.attention(q, x, mask)
            y = self.ffn_norm(x)
            return y + self.dropout(self.ffn(y))
        x = self.attn_norm(x + self.dropout(self.attention(x, x, mask)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class TransformerEncoder(nn.Module):
    """Item + right-aligned position embeddings, then ``layers`` blocks; padding rows zeroed."""

    def __init__(
        self,
        num_tokens: int,
        max_len: int,
        hidden: int,
        layers: int,
        heads: int,
        inner: int,
        activation: str,
        dropout: float,
        attn_dropout: float,
        eps: float,
        norm_first: bool,
        scale_embeddings: bool,
        raw_residual: bool = False,
        pad_keys_visible: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise InputError(f"unknown activation '{activation}': choose one of {', '.join(ACTIVATIONS)}")
        self.max_len = max_len
        self.norm_first = norm_first
        self.pad_keys_visible = pad_keys_visible
        self.scale = math.sqrt(hidden) if scale_embeddings else 1.0
        self.items = nn.Embedding(num_tokens, hidden, padding_idx=0)
        self.positions = nn.Embedding(max_len, hidden)
        # Post-norm (BERT style) normalises the embedding sum; pre-norm ends with a final LayerNorm.
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, heads, inner, activation, dropout, attn_dropout, eps, norm_first, raw_residual)
            for _ in range(layers)
        )

    def embed(self, input_ids: Tensor) -> Tensor:
        length = input_ids.shape[1]
        if length > self.max_len:
            raise InputError(f"input length {length} exceeds the model's max_len {self.max_len}")
        positions = torch.arange(self.max_len - length, self.max_len, device=input_ids.device)
        x = self.items(input_ids) * self.scale + self.positions(positions)[None]
        if not self.norm_first:
            x = self.norm(x)
        return self.dropout(x)

    def forward(self, input_ids: Tensor, causal: bool) -> Tensor:
        mask = attention_mask(input_ids, causal, self.pad_keys_visible)
        real = (input_ids > 0).unsqueeze(-1).to(self.positions.weight.dtype)
        x = self.embed(input_ids)
        for block in self.blocks:
            # Visible pads must stay zero between blocks (Xu's code); hidden ones never reach a real position.
            x = block(x * real if self.pad_keys_visible else x, mask)
        if self.norm_first:
            x = self.norm(x * real if self.pad_keys_visible else x)
        return x * real.to(x.dtype)


def init_normal_(module: nn.Module, std: float) -> None:
    """The papers' code: Linear and Embedding weights ~ N(0, std), biases 0, LayerNorm (1, 0).

    Padding rows are zeroed: they are never scored, and zero keeps ``item_embeddings()[0]`` inert.
    """
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Embedding)):
            nn.init.normal_(sub.weight, mean=0.0, std=std)
            if isinstance(sub, nn.Linear) and sub.bias is not None:
                nn.init.zeros_(sub.bias)
            if isinstance(sub, nn.Embedding) and sub.padding_idx is not None:
                with torch.no_grad():
                    sub.weight[sub.padding_idx].zero_()
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


def init_xavier_(module: nn.Module) -> None:
    """Xu et al.'s code: Xavier-normal Embedding and Linear weights (biases 0), with the attention
    in-projection and the FFN at PyTorch's own defaults, because there they are an
    ``nn.MultiheadAttention`` (q, k, v stacked into one 3d x d matrix, Xavier-uniform, bias 0) and
    1x1 ``Conv1d`` layers (the same default as a fresh ``nn.Linear``), which that code does not
    re-initialise. LayerNorm (1, 0); padding rows zeroed (never scored or attended to as items).
    """
    for sub in module.modules():
        if isinstance(sub, MultiHeadSelfAttention):
            hidden = sub.query.in_features
            bound = math.sqrt(6.0 / (hidden + 3 * hidden))  # Xavier-uniform of the stacked 3d x d projection
            for projection in (sub.query, sub.key, sub.value):
                nn.init.uniform_(projection.weight, -bound, bound)
                nn.init.zeros_(projection.bias)
            nn.init.xavier_normal_(sub.out.weight)
            nn.init.zeros_(sub.out.bias)
        elif isinstance(sub, FeedForward):
            sub.fc1.reset_parameters()
            sub.fc2.reset_parameters()
        elif isinstance(sub, nn.Embedding):
            nn.init.xavier_normal_(sub.weight)
            if sub.padding_idx is not None:
                with torch.no_grad():
                    sub.weight[sub.padding_idx].zero_()
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
