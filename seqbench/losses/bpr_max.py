"""``bpr-max``: GRU4Rec+'s BPR-max, -log sum_k w_k sigmoid(s_p - s_nk) (+ lambda sum_k w_k s_nk^2).

w = softmax over the negatives' scores. Computed in log space,
log sum_k w_k sigmoid(.) = logsumexp_k(log_softmax(s_n)_k + log sigmoid(s_p - s_nk)), so it stays
finite where the original's sum of tiny products underflows. Defaults (not fixed by the spec):
K = 128 uniform negatives, lambda (``bpreg``) = 0, last position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from seqbench.errors import InputError
from seqbench.losses.sampled import SampledLoss
from seqbench.losses.samplers import Negatives, SamplerParams
from seqbench.space import integer, real


@dataclass
class BPRMaxParams(SamplerParams):
    num_negatives: int = 128
    bpreg: float = 0.0  # lambda of the score regulariser

    def validate(self, num_items: int) -> None:
        super().validate(num_items)
        if self.bpreg < 0:
            raise InputError(f"bpreg must be >= 0 (got {self.bpreg})")


class BPRMax(SampledLoss):
    name = "bpr-max"
    paper = "Hidasi & Karatzoglou 2018, GRU4Rec+ (recurrent neural networks with top-k gains)"
    help = "BPR-max: softmax-weighted BPR over sampled negatives (GRU4Rec+, Hidasi & Karatzoglou)"
    default_positions = "last"
    Params = BPRMaxParams
    params: BPRMaxParams
    space = (integer("loss.num_negatives", 32, 512, log=True), real("loss.bpreg", 0.0, 2.0))

    def per_position(self, pos: Tensor, neg: Tensor, negatives: Negatives) -> Tensor:
        log_weights = torch.log_softmax(neg, dim=-1)
        value = -torch.logsumexp(log_weights + F.logsigmoid(pos[:, None] - neg), dim=-1)
        if self.params.bpreg > 0:
            value = value + self.params.bpreg * (log_weights.exp() * neg.square()).sum(-1)
        return value
