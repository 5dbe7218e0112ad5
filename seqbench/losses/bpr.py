"""``bpr``: Bayesian personalised ranking, mean_k softplus(s_nk - s_p) = -mean_k log sigmoid(s_p - s_nk).

Default: K = 1 negative per position not in the user's history, at every position (SASRec-style
models); GRU4Rec's classic setting trains it at the last position (``positions=last``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from seqbench.losses.base import Positions
from seqbench.losses.sampled import SampledLoss
from seqbench.losses.samplers import Negatives, SamplerParams
from seqbench.space import integer


@dataclass
class BPRParams(SamplerParams):
    num_negatives: int = 1
    exclude_history: bool = True


class BPR(SampledLoss):
    name = "bpr"
    paper = "Rendle et al. 2009, BPR; GRU4Rec (Hidasi et al. 2016)"
    help = "Bayesian personalised ranking, 1 negative (Rendle et al.; GRU4Rec's classic loss)"
    default_positions = "all"
    model_positions: ClassVar[dict[str, Positions]] = {"gru4rec": "last"}  # losses.md: last for GRU4Rec, all for the others
    Params = BPRParams
    space = (integer("loss.num_negatives", 1, 64, log=True),)

    def per_position(self, pos: Tensor, neg: Tensor, negatives: Negatives) -> Tensor:
        return F.softplus(neg - pos[:, None]).mean(-1)
