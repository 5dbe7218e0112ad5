"""``ce`` and ``cce``: the full softmax cross-entropy over items 1..N, at the last or every timestamp.

One mathematical loss, three interchangeable implementations (``ce_impl``): ``dense`` builds the
n x N logits, ``chunked`` is the exact chunked autograd function of ``chunked_ce`` (no logits
matrix), ``auto`` picks chunked when n x N x 4 bytes would exceed ``memory_budget_mib``; ``cut``
calls Apple's ``cut-cross-entropy`` kernels (CUDA only, when the package is installed).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from seqbench.errors import InputError
from seqbench.losses.base import Loss, LossBatch, LossOutput, Positions, gather_selected, zero_loss
from seqbench.losses.chunked_ce import DEFAULT_CHUNK, chunked_cross_entropy, dense_cross_entropy

CE_IMPLS = ("dense", "chunked", "auto", "cut")
CPU_CHUNKED_MIN_LOGITS = 2**22  # n x N from which auto takes the chunked loss on CPU


def cut_available() -> bool:
    return importlib.util.find_spec("cut_cross_entropy") is not None and torch.cuda.is_available()


@dataclass
class CrossEntropyParams:
    ce_impl: str = "auto"  # dense | chunked | auto | cut
    chunk_size: int = DEFAULT_CHUNK  # items per chunk of the chunked implementation
    memory_budget_mib: float = 256.0  # auto: chunked when the n x N float32 logits exceed this

    def validate(self, num_items: int) -> None:
        if self.ce_impl not in CE_IMPLS:
            raise InputError(f"unknown ce_impl {self.ce_impl!r}; valid: {', '.join(CE_IMPLS)}")
        if self.ce_impl == "cut" and not cut_available():
            raise InputError(
                "ce_impl=cut needs the cut-cross-entropy package and CUDA; valid here: dense, chunked, auto"
            )
        if self.chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1 (got {self.chunk_size})")
        if self.memory_budget_mib <= 0:
            raise InputError(f"memory_budget_mib must be > 0 (got {self.memory_budget_mib})")


def _cut_cross_entropy(x: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
    from cut_cross_entropy import linear_cross_entropy  # optional dependency, CUDA only

    items = table[1:]
    return linear_cross_entropy(
        x, items, targets - 1, bias=None if bias is None else bias[1:], reduction="none"
    )


class CrossEntropy(Loss):
    """Full softmax cross-entropy at the last timestamp: -s_p + logsumexp_{j=1..N} s_j."""

    name = "ce"
    paper = "Li et al., cumulative cross-entropy (CCE) paper: its L_ce column"
    help = "full softmax cross-entropy at the last position (CE of the CCE paper, Li et al.)"
    default_positions: ClassVar[Positions] = "last"
    needs_negatives = False
    Params = CrossEntropyParams

    def implementation(self, rows: int, device_type: str = "cpu") -> str:
        """The implementation used for ``rows`` loss positions (resolves ``auto``).

        ``auto``: chunked when the logits would exceed the memory budget, and on CPU also from
        ``CPU_CHUNKED_MIN_LOGITS`` on, where its cache-sized tiles beat the dense passes over
        memory (1 thread: 1.4-1.7x at 2,000 x 12,101 and 5,900 x 3,646; see docs/performance.md).
        """
        impl = self.params.ce_impl
        if impl != "auto":
            return impl
        logits = rows * self.num_items
        if logits * 4 > self.params.memory_budget_mib * 2**20:
            return "chunked"
        return "chunked" if device_type == "cpu" and logits >= CPU_CHUNKED_MIN_LOGITS else "dense"

    def compute(self, batch: LossBatch, mask: Tensor) -> LossOutput:
        selected = gather_selected(batch, mask)
        if selected.count == 0:
            return LossOutput(zero_loss(batch), {"positions": 0.0})
        x, table, bias, targets = selected.hidden, batch.item_embeddings, batch.item_bias, selected.targets
        impl = self.implementation(selected.count, x.device.type)
        if impl == "chunked":
            per_row = chunked_cross_entropy(x, table, bias, targets, self.params.chunk_size)
        elif impl == "cut":
            per_row = _cut_cross_entropy(x, table, bias, targets)
        else:
            per_row = dense_cross_entropy(x, table, bias, targets)
        with torch.no_grad():
            positive = (x * table[targets]).sum(-1)
            if bias is not None:
                positive = positive + bias[targets]
        diagnostics = {
            "positions": float(selected.count),
            "mean_positive_logit": float(positive.mean()),
            "chunked": float(impl == "chunked"),
        }
        return LossOutput(per_row.mean(), diagnostics)


class CumulativeCrossEntropy(CrossEntropy):
    """Cumulative cross-entropy: the full softmax at every non-padding timestamp."""

    name = "cce"
    paper = "Li et al., cumulative cross-entropy (CCE); the 'CE' of Xu et al. and Mezentsev et al."
    help = "cumulative cross-entropy: full softmax at every position (CCE, Li et al.)"
    default_positions: ClassVar[Positions] = "all"
