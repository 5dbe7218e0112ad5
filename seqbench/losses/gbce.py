"""``gbce``: gSASRec's generalised binary cross-entropy.

beta = 1 - t (1 - alpha_s), alpha_s = K / (N - 1) with N the number of real items; per position
-beta log sigmoid(s_p) + sum_k softplus(s_nk). The positive term is computed as beta * logsigmoid,
never as log(sigmoid^beta), which underflows. t = 0 gives exactly ``bce``.
Defaults: t = 0.75, K = 256 uniform negatives with replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from seqbench.errors import InputError
from seqbench.losses.sampled import SampledLoss
from seqbench.losses.samplers import Negatives, SamplerParams
from seqbench.space import integer, real


@dataclass
class GBCEParams(SamplerParams):
    num_negatives: int = 256
    t: float = 0.75  # calibration: 0 = bce, 1 = fully calibrated

    def validate(self, num_items: int) -> None:
        super().validate(num_items)
        if not 0.0 <= self.t <= 1.0:
            raise InputError(f"t must be in [0, 1] (got {self.t})")
        if num_items < 2:
            raise InputError("gbce needs at least 2 items (alpha_s = K / (N - 1))")


class GBCE(SampledLoss):
    name = "gbce"
    paper = "Petrov & Macdonald 2023, gSASRec"
    help = "generalised BCE with calibration t=0.75, K=256 (gSASRec, Petrov & Macdonald)"
    default_positions = "all"
    Params = GBCEParams
    params: GBCEParams
    # gSASRec's two knobs: negatives K and the calibration t (t = 0 is bce).
    space = (integer("loss.num_negatives", 16, 512, log=True), real("loss.t", 0.0, 1.0))

    @property
    def beta(self) -> float:
        alpha_s = self.params.num_negatives / (self.num_items - 1)
        return 1.0 - self.params.t * (1.0 - alpha_s)

    def per_position(self, pos: Tensor, neg: Tensor, negatives: Negatives) -> Tensor:
        return -self.beta * F.logsigmoid(pos) + F.softplus(neg).sum(-1)
