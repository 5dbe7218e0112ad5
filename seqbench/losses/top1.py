"""``top1``: GRU4Rec's TOP1 ranking loss, mean_k [sigmoid(s_nk - s_p) + sigmoid(s_nk^2)].

GRU4Rec takes the other items of the session-parallel mini-batch as negatives; seqbench samples
K = 32 uniform negatives instead (a mini-batch of 33 sessions), at the last position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seqbench.losses.sampled import SampledLoss
from seqbench.losses.samplers import Negatives, SamplerParams
from seqbench.space import integer


@dataclass
class TOP1Params(SamplerParams):
    num_negatives: int = 32


class TOP1(SampledLoss):
    name = "top1"
    paper = "Hidasi et al. 2016, GRU4Rec"
    help = "TOP1 ranking loss with sampled negatives (GRU4Rec, Hidasi et al.)"
    default_positions = "last"
    Params = TOP1Params
    space = (integer("loss.num_negatives", 8, 256, log=True),)

    def per_position(self, pos: Tensor, neg: Tensor, negatives: Negatives) -> Tensor:
        return (torch.sigmoid(neg - pos[:, None]) + torch.sigmoid(neg.square())).mean(-1)
