"""``bce``: SASRec's binary cross-entropy with sampled negatives (sum form).

Per position: softplus(-s_p) + sum_k softplus(s_nk) = -log sigmoid(s_p) - sum_k log(1 - sigmoid(s_nk)).
The negatives' terms are *summed*, as in the original SASRec; Mezentsev et al. divide by 1 + K and
Xu et al. average the two terms separately, which only rescales the gradient.
Default: one uniform negative per position that is not in the user's history (SASRec's sampler).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from seqbench.losses.sampled import SampledLoss
from seqbench.losses.samplers import Negatives, SamplerParams
from seqbench.space import integer


@dataclass
class BCEParams(SamplerParams):
    num_negatives: int = 1
    exclude_history: bool = True


class BCE(SampledLoss):
    name = "bce"
    paper = "Kang & McAuley 2018, SASRec"
    help = "binary cross-entropy, 1 negative per position, sum form (SASRec, Kang & McAuley)"
    default_positions = "all"
    Params = BCEParams
    # Xu et al. and gSASRec show BCE gains from more negatives than SASRec's one.
    space = (integer("loss.num_negatives", 1, 256, log=True),)

    def per_position(self, pos: Tensor, neg: Tensor, negatives: Negatives) -> Tensor:
        return F.softplus(-pos) + F.softplus(neg).sum(-1)
