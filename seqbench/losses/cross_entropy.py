"""``ce`` and ``cce``: the full softmax cross-entropy over items 1..N, at the last or every timestamp.

One mathematical loss, interchangeable implementations (``ce_impl``): ``dense`` builds the
n x N logits through torch's cross-entropy, ``chunked`` is the exact chunked autograd function of
``chunked_ce`` (no logits matrix), ``fused`` keeps the logits as dense does but computes them and
their gradient in cache-sized strips (on CPU far faster than dense while n x N fits), ``auto``
picks the fastest exact one for the shape at hand within ``memory_budget_mib`` (rule below);
``cut`` calls Apple's ``cut-cross-entropy`` kernels (CUDA only, when the package is installed).

``auto``'s rule has a version (``AUTO_RULE``) that enters the run id of every run configured with
``auto`` (``Loss.code_tag``): runs stored under rule 1 (dense below the budget) keep their ids and
their meaning, runs under rule 2 get new ids. Rule 2, measured with ``benchmarks/ce_device.py``
(docs/performance.md, 1 thread, d 64): above the budget chunked; on CPU below it torch's chunked
``F.linear_cross_entropy`` while N <= TORCH_MAX_ITEMS (0.56-0.77x of dense's time at LastFM's and
Beauty's shapes, the fastest there), seqbench's chunked beyond (0.67-0.9x at 3e4 items, where
torch's falls behind), and chunked also where this torch lacks the function; on CUDA dense.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

import torch
from torch import Tensor

from seqbench.errors import InputError
from seqbench.losses.base import (
    Loss,
    LossBatch,
    LossOutput,
    Positions,
    gather_selected,
    zero_loss,
)
from seqbench.losses.chunked_ce import (
    DEFAULT_CHUNK,
    chunked_cross_entropy,
    dense_cross_entropy,
    fused_cross_entropy,
)


class CeImpl(str, Enum):
    """How ``ce``/``cce`` compute the softmax: the values of ``ce_impl`` (``--set ce_impl=chunked``).

    A str enum, so stored values, ``--set`` text and memprof's ``cce[chunked]`` compare equal to it.
    """

    DENSE = "dense"  # the n x N logits matrix
    CHUNKED = "chunked"  # exact, tiled, no logits matrix
    FUSED = "fused"  # the logits kept, computed and used in cache-sized strips (dense memory, less time)
    AUTO = "auto"  # the fastest exact one within memory_budget_mib (AUTO_RULE)
    CUT = "cut"  # Apple's cut-cross-entropy kernels (CUDA, optional package)
    TORCH = "torch"  # torch's own chunked F.linear_cross_entropy (LinearCrossEntropyOptions), where this torch has it

    def __str__(self) -> str:  # the plain value in messages, JSON and run records
        return self.value


CE_IMPLS: tuple[str, ...] = tuple(CeImpl)
AUTO_RULE = 2
# Rule 2's CPU crossover: torch's chunked CE is fastest up to this catalogue, seqbench's beyond
# (benchmarks/ce_device.py: torch's wins at 2e4 items with 12,800 rows, loses at 3e4).
TORCH_MAX_ITEMS = 20_000


def torch_chunked_available() -> bool:
    return hasattr(torch.nn.functional, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions")


def cut_available() -> bool:
    return importlib.util.find_spec("cut_cross_entropy") is not None and torch.cuda.is_available()


@dataclass
class CrossEntropyParams:
    ce_impl: CeImpl = CeImpl.AUTO
    chunk_size: int = DEFAULT_CHUNK  # items per chunk of the chunked implementation
    memory_budget_mib: float = 256.0  # auto: chunked when the n x N float32 logits exceed this

    def validate(self, num_items: int) -> None:
        if self.ce_impl not in CE_IMPLS:
            raise InputError(f"unknown ce_impl {self.ce_impl!r}; valid: {', '.join(CE_IMPLS)}")
        self.ce_impl = CeImpl(self.ce_impl)
        if self.ce_impl == CeImpl.CUT and not cut_available():
            raise InputError(
                "ce_impl=cut needs the cut-cross-entropy package and CUDA; valid here: dense, chunked, fused, auto"
            )
        if self.ce_impl == CeImpl.TORCH and not torch_chunked_available():
            raise InputError(f"ce_impl=torch needs a torch with F.linear_cross_entropy options (this is {torch.__version__}): "
                             "use ce_impl=chunked, the same exact loss")
        if self.chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1 (got {self.chunk_size})")
        if self.memory_budget_mib <= 0:
            raise InputError(f"memory_budget_mib must be > 0 (got {self.memory_budget_mib})")


def _torch_cross_entropy(x: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
    """Per-row CE through torch's chunked ``F.linear_cross_entropy`` (items 1..N: row 0 is padding)."""
    return torch.nn.functional.linear_cross_entropy(
        x, table[1:], targets - 1, linear_bias=None if bias is None else bias[1:], reduction="none",
        options=torch.nn.LinearCrossEntropyOptions(),
    )


def _cut_cross_entropy(x: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
    from cut_cross_entropy import linear_cross_entropy  # optional: cut-cross-entropy (CUDA only)

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
    params: CrossEntropyParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.used: set[CeImpl] = set()  # what ``auto`` resolved to, batch by batch

    @classmethod
    def code_tag(cls, params: Any) -> str:
        """``auto`` runs depend on the rule that resolves it: its version is part of their run id."""
        tags = [super().code_tag(params), f"auto-rule-{AUTO_RULE}" if getattr(params, "ce_impl", None) == CeImpl.AUTO else ""]
        return "+".join(tag for tag in tags if tag)

    def implementation(self, rows: int, device_type: str = "cpu") -> CeImpl:
        """The implementation used for ``rows`` loss positions (resolves ``auto`` by rule 2)."""
        impl = self.params.ce_impl
        if impl != CeImpl.AUTO:
            return impl
        if rows * self.num_items * 4 > self.params.memory_budget_mib * 2**20:
            return CeImpl.CHUNKED
        if device_type != "cpu":
            return CeImpl.DENSE
        return CeImpl.TORCH if self.num_items <= TORCH_MAX_ITEMS and torch_chunked_available() else CeImpl.CHUNKED

    def implementation_used(self) -> str:
        """``dense``, ``chunked``, ``cut``, or ``dense+chunked`` when ``auto`` chose per batch.

        Before any batch (``epochs=0``) nothing ran: the configured value, possibly ``auto``.
        """
        return "+".join(impl.value for impl in CeImpl if impl in self.used) or str(self.params.ce_impl)

    def compute(self, batch: LossBatch, mask: Tensor) -> LossOutput:
        selected = gather_selected(batch, mask)
        if selected.count == 0:
            return LossOutput(zero_loss(batch), lambda: {"positions": 0.0})
        x, table, bias, targets = selected.hidden, batch.item_embeddings, batch.item_bias, selected.targets
        impl = self.implementation(selected.count, x.device.type)
        self.used.add(impl)
        if impl == CeImpl.CHUNKED:
            per_row = chunked_cross_entropy(x, table, bias, targets, self.params.chunk_size)
        elif impl == CeImpl.FUSED:
            per_row = fused_cross_entropy(x, table, bias, targets)
        elif impl == CeImpl.CUT:
            per_row = _cut_cross_entropy(x, table, bias, targets)
        elif impl == CeImpl.TORCH:
            per_row = _torch_cross_entropy(x, table, bias, targets)
        else:
            per_row = dense_cross_entropy(x, table, bias, targets)
        x, table, count = x.detach(), table.detach(), selected.count
        bias = None if bias is None else bias.detach()

        def diagnose() -> dict[str, float]:
            positive = (x * table[targets]).sum(-1)
            if bias is not None:
                positive = positive + bias[targets]
            return {
                "positions": float(count),
                "mean_positive_logit": float(positive.mean()),
                "chunked": float(impl == CeImpl.CHUNKED),
            }

        return LossOutput(per_row.mean(), diagnose)


class CumulativeCrossEntropy(CrossEntropy):
    """Cumulative cross-entropy: the full softmax at every non-padding timestamp."""

    name = "cce"
    paper = "Li et al., cumulative cross-entropy (CCE); the 'CE' of Xu et al. and Mezentsev et al."
    help = "cumulative cross-entropy: full softmax at every position (CCE, Li et al.)"
    default_positions: ClassVar[Positions] = "all"
