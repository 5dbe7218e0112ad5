"""GRU4Rec (Hidasi et al., 2016) in its session-parallel-free, padded-sequence form.

item embedding -> dropout -> GRU (1 layer, hidden 64) -> linear projection to the embedding size,
giving a hidden state at every timestep so that all-timestamp losses apply. Scoring uses the input
embedding table (tied), as in RecBole and the benchmarks seqbench reproduces.

Left padding would otherwise run through the GRU and change its state, so each row is rotated to
right padding and run as a packed sequence: real positions see exactly the real items before them.
Initialisation follows RecBole's GRU4Rec: Xavier-normal embeddings, Xavier-uniform GRU weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqbench.errors import InputError
from seqbench.models.base import SequentialRecommender


@dataclass
class GRU4RecConfig:
    embedding_size: int = 64
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.3  # on the item embeddings (RecBole's GRU4Rec default)


def rotate_rows(x: Tensor, shift: Tensor) -> Tensor:
    """Row b of the B x L (x d) tensor rolled left by ``shift[b]`` positions (cyclically)."""
    length = x.shape[1]
    index = (torch.arange(length, device=x.device)[None, :] + shift[:, None]) % length
    if x.dim() == 3:
        index = index.unsqueeze(-1).expand(-1, -1, x.shape[2])
    return torch.gather(x, 1, index)


class GRU4Rec(SequentialRecommender):
    name: ClassVar[str] = "gru4rec"
    Config: ClassVar[type] = GRU4RecConfig
    target_positions: ClassVar[str] = "causal"

    def __init__(self, config: GRU4RecConfig, num_items: int, max_len: int) -> None:
        super().__init__(config, num_items, max_len)
        for name in ("embedding_size", "hidden_size", "num_layers"):
            if getattr(config, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(config, name)}")
        self.items = nn.Embedding(num_items + 1, config.embedding_size, padding_idx=0)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.embedding_size, config.hidden_size, config.num_layers, batch_first=True, bias=True)
        self.project = nn.Linear(config.hidden_size, config.embedding_size)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.xavier_normal_(self.items.weight)
        with torch.no_grad():
            self.items.weight[0].zero_()
        for name, param in self.gru.named_parameters():
            if name.startswith("weight"):
                nn.init.xavier_uniform_(param)

    def forward(self, input_ids: Tensor) -> Tensor:
        lengths = (input_ids > 0).sum(dim=1)
        pad = input_ids.shape[1] - lengths
        x = self.dropout(self.items(input_ids))
        right_padded = rotate_rows(x, pad)
        packed = pack_padded_sequence(right_padded, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=input_ids.shape[1])
        hidden = self.project(rotate_rows(out, (-pad) % input_ids.shape[1]))
        return hidden * (input_ids > 0).unsqueeze(-1).to(hidden.dtype)

    def item_embeddings(self) -> Tensor:
        return self.items.weight

    def encode_last(self, histories: Tensor) -> Tensor:
        # The protocol truncates every input to max_len, recurrent or not, so models compare fairly.
        return self.forward(histories[:, -self.max_len :])[:, -1]
