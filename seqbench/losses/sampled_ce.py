"""``sampled-ce`` and ``scaled-ce``: softmax over the positive plus K sampled negatives.

sampled-ce ("CE^-"): -s_p + log(e^{s_p} + sum_k e^{s_nk}); default K = 256 uniform negatives
excluding the user's history. scaled-ce (Xu et al.): -s_p + log(e^{s_p} + alpha sum_k e^{s_nk}),
i.e. every negative logit shifted by log(alpha); default alpha = 100, K = 100, uniform with
replacement over all items, the positive *not* excluded (on purpose, as in the paper).

``logq=true`` applies the sampled-softmax correction to the negatives only: s_nk - log(K Q(n_k)),
so the negatives' sum estimates the full partition function (the positive is not sampled and is
left as is). With the uniform sampler that is scaled-ce with alpha = N / K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from seqbench.errors import InputError
from seqbench.losses.sampled import SampledLoss
from seqbench.losses.samplers import Negatives, SamplerParams
from seqbench.space import choice, integer, real


@dataclass
class SampledCEParams(SamplerParams):
    num_negatives: int = 256
    exclude_history: bool = True
    logq: bool = False  # subtract log(K Q(j)) from each negative's logit


@dataclass
class ScaledCEParams(SamplerParams):
    num_negatives: int = 100
    alpha: float = 100.0  # weight of the negatives' mass in the denominator
    logq: bool = False

    def validate(self, num_items: int) -> None:
        super().validate(num_items)
        if not self.alpha > 0:
            raise InputError(f"alpha must be > 0 (got {self.alpha})")


def softmax_with_negatives(pos: Tensor, neg: Tensor) -> Tensor:
    """-s_p + logsumexp([s_p, s_n1..s_nK]) per row."""
    return torch.logsumexp(torch.cat([pos[:, None], neg], dim=1), dim=1) - pos


class SampledCE(SampledLoss):
    name = "sampled-ce"
    paper = "sampled softmax (CE^- of Xu et al.; Jean et al. 2015)"
    help = "sampled softmax: positive + K=256 negatives excluding history (CE^-, Xu et al.)"
    default_positions = "all"
    # scaled-ce below is this loss with its own parameters (alpha instead of exclude_history).
    Params: ClassVar[type[SampledCEParams | ScaledCEParams]] = SampledCEParams
    params: SampledCEParams | ScaledCEParams
    space = (integer("loss.num_negatives", 16, 1024, log=True), choice("loss.logq", False, True))

    @property
    def wants_log_q(self) -> bool:  # type: ignore[override]
        return bool(self.params.logq)

    def shifted_negatives(self, neg: Tensor, negatives: Negatives) -> Tensor:
        if self.params.logq:
            assert negatives.log_q is not None
            neg = neg - (negatives.log_q + math.log(self.params.num_negatives)).to(neg.dtype)
        return neg

    def per_position(self, pos: Tensor, neg: Tensor, negatives: Negatives) -> Tensor:
        return softmax_with_negatives(pos, self.shifted_negatives(neg, negatives))


class ScaledCE(SampledCE):
    name = "scaled-ce"
    paper = "Xu et al., scaled cross-entropy"
    help = "scaled cross-entropy: negatives' mass scaled by alpha=100, K=100 (Xu et al.)"
    Params = ScaledCEParams
    params: ScaledCEParams
    space = (integer("loss.num_negatives", 16, 512, log=True), real("loss.alpha", 1.0, 1000.0, log=True))

    def per_position(self, pos: Tensor, neg: Tensor, negatives: Negatives) -> Tensor:
        neg = self.shifted_negatives(neg, negatives) + math.log(self.params.alpha)
        return softmax_with_negatives(pos, neg)
