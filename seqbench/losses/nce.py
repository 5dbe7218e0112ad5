"""``nce`` and ``neg``: noise-contrastive estimation and word2vec negative sampling.

nce (Xu et al.'s form, fixed normaliser c): s' = s + ln(N/K) - c for the positive and every
negative, value -log sigmoid(s'_p) - sum_k log(1 - sigmoid(s'_nk)). neg: the same with s' = s
(Mikolov et al.), i.e. nce with c = ln(N/K). Both default to K = 100 uniform negatives with
replacement (as scaled-ce); nce's c defaults to 10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from seqbench.losses.sampled import SampledLoss
from seqbench.losses.samplers import Negatives, SamplerParams
from seqbench.space import integer, real


@dataclass
class NEGParams(SamplerParams):
    num_negatives: int = 100


@dataclass
class NCEParams(NEGParams):
    c: float = 10.0  # the fixed log-normaliser


def binary_logistic(pos: Tensor, neg: Tensor) -> Tensor:
    """-log sigmoid(s_p) - sum_k log sigmoid(-s_nk) = softplus(-s_p) + sum_k softplus(s_nk)."""
    return F.softplus(-pos) + F.softplus(neg).sum(-1)


class NEG(SampledLoss):
    name = "neg"
    paper = "Mikolov et al. 2013, word2vec negative sampling"
    help = "negative sampling: logistic loss on positive and K=100 negatives (word2vec, Mikolov et al.)"
    default_positions = "all"
    Params = NEGParams
    space = (integer("loss.num_negatives", 16, 512, log=True),)

    def per_position(self, pos: Tensor, neg: Tensor, negatives: Negatives) -> Tensor:
        return binary_logistic(pos, neg)


class NCE(SampledLoss):
    name = "nce"
    paper = "Gutmann & Hyvarinen 2010, NCE; in the form of Xu et al."
    help = "noise-contrastive estimation with fixed normaliser c=10, K=100 (Xu et al.)"
    default_positions = "all"
    Params = NCEParams
    params: NCEParams
    space = (integer("loss.num_negatives", 16, 512, log=True), real("loss.c", 1.0, 20.0))

    def per_position(self, pos: Tensor, neg: Tensor, negatives: Negatives) -> Tensor:
        shift = math.log(self.num_items / self.params.num_negatives) - self.params.c
        return binary_logistic(pos + shift, neg + shift)
