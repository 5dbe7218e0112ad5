"""The one interface every training objective implements.

A loss sees the encoder's hidden states at every position, the positive item of every position
(0 = no target there: padding, or a position the model does not train on), and the model's item
scoring (the tied embedding table, optionally a bias). It picks its positions (``all`` or
``last``), computes a per-position value on the selected positions and returns their mean plus a
few diagnostics, computed only when read.

Adding a loss = one file with a ``Loss`` subclass + one line in ``seqbench/losses/registry.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from seqbench.space import Space

Positions = Literal["all", "last"]


@dataclass
class LossBatch:
    hidden: Tensor  # B x L x d encoder outputs
    positives: Tensor  # B x L int64, target item per position, 0 = no target
    item_embeddings: Tensor  # (N + 1) x d, row 0 = padding, never scored
    item_bias: Tensor | None = None  # (N + 1,) or None
    history: Tensor | None = None  # B x H int64, the user's training items (0-padded), for exclusion
    generator: torch.Generator | None = None  # the run's seeded generator, on the loss's device
    # Optional explicit negatives B x L x K (item ids >= 1) used instead of the loss's sampler:
    # for tests and for trainers that share negatives between losses.
    negatives: Tensor | None = None

    @classmethod
    def for_model(
        cls, model: Any, hidden: Tensor, positives: Tensor, history: Tensor | None, generator: torch.Generator | None
    ) -> LossBatch:
        """The batch a training step hands its loss: ``model``'s item scoring with these states.

        One builder for the trainer and memprof, so the profiled step is the trained one.
        """
        return cls(
            hidden=hidden,
            positives=positives,
            item_embeddings=model.item_embeddings(),
            item_bias=model.item_bias(),
            history=history,
            generator=generator,
        )


Diagnostics = dict[str, float]


def _no_diagnostics() -> Diagnostics:
    return {}


@dataclass
class LossOutput:
    """The loss value, and diagnostics computed only when :attr:`diagnostics` is read.

    Why lazy: each diagnostic is a ``float()`` of a device tensor, which on CUDA waits for the
    device; computing them every training step would stall the step for figures nobody reads.
    """

    value: Tensor  # scalar
    diagnose: Callable[[], Diagnostics] = field(default=_no_diagnostics, repr=False)

    @cached_property
    def diagnostics(self) -> Diagnostics:
        return self.diagnose()


def select_positions(positives: Tensor, positions: Positions) -> Tensor:
    """Boolean B x L mask of the positions that carry a loss."""
    has_target = positives > 0
    if positions == "all":
        return has_target
    # Sequences are left-padded, so the last position with a target is the right-most one.
    last = torch.zeros_like(has_target)
    index = torch.arange(positives.shape[1], device=positives.device).expand_as(positives)
    last_index = torch.where(has_target, index, -1).max(dim=1).values
    rows = torch.nonzero(last_index >= 0).squeeze(1)
    last[rows, last_index[rows]] = True
    return last


@dataclass
class Selected:
    """The loss-carrying positions of a batch, flattened to n rows."""

    hidden: Tensor  # n x d
    targets: Tensor  # n int64, all >= 1
    rows: Tensor  # n int64, the sequence (batch row) of each position
    mask: Tensor  # B x L bool, the positions that were selected

    @property
    def count(self) -> int:
        return int(self.targets.shape[0])


def gather_selected(batch: LossBatch, mask: Tensor) -> Selected:
    """X = hidden[mask], their targets and batch rows (row-major order, like boolean indexing)."""
    rows = mask.nonzero()[:, 0]
    return Selected(hidden=batch.hidden[mask], targets=batch.positives[mask], rows=rows, mask=mask)


def zero_loss(batch: LossBatch) -> Tensor:
    """A zero that still belongs to the graph, for a batch without any loss position."""
    zero = batch.hidden.sum() * 0.0 + batch.item_embeddings.sum() * 0.0
    return zero if batch.item_bias is None else zero + batch.item_bias.sum() * 0.0


class Loss(nn.Module, abc.ABC):
    """Base class; subclasses set the class attributes and implement :meth:`compute`."""

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    default_positions: ClassVar[Positions] = "all"
    # Models whose papers train this loss at other positions (GRU4Rec's BPR: the last one only).
    model_positions: ClassVar[dict[str, Positions]] = {}
    needs_negatives: ClassVar[bool] = False
    Params: ClassVar[type]  # a dataclass of hyper-parameters with the spec's defaults
    # What ``seqbench tune`` searches beyond the shared spaces (seqbench/space.py), declared
    # next to ``Params``; keys are ``loss.<Params field>``. Empty: nothing of its own to tune.
    space: ClassVar[tuple[Space, ...]] = ()

    help: ClassVar[str] = ""  # one line for the CLI, naming the paper
    # Raise when an edit changes what the loss computes: runs stored before then get new run ids
    # (version 1 is not hashed, so raising it is the only change to existing ids).
    code_version: ClassVar[int] = 1

    @classmethod
    def code_tag(cls, params: Any) -> str:
        """What of this loss's code a run with ``params`` depends on, for its run id ("" = nothing
        beyond version 1). A loss whose meaning changed only for some settings says so here."""
        return f"v{cls.code_version}" if cls.code_version > 1 else ""

    @classmethod
    def positions_for(cls, model: str, override: Positions | None = None) -> Positions:
        """Where this loss is trained with ``model``: the config's ``positions`` when given, else
        the model's paper's choice (``model_positions``), else the loss's default."""
        return override or cls.model_positions.get(model, cls.default_positions)

    def __init__(
        self,
        params: object,
        num_items: int,
        positions: Positions | None = None,
        item_counts: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.params = params
        self.num_items = num_items
        self.positions: Positions = positions or self.default_positions
        # Training-set interaction count per item (for popularity samplers); index = item id when it
        # has N + 1 entries, items 1..N when it has N.
        self.item_counts = item_counts

    def implementation_used(self) -> str:
        """The implementation(s) the loss ran with so far, for the run record ("" = only one exists)."""
        return ""

    def forward(self, batch: LossBatch) -> LossOutput:
        mask = select_positions(batch.positives, self.positions)
        return self.compute(batch, mask)

    @abc.abstractmethod
    def compute(self, batch: LossBatch, mask: Tensor) -> LossOutput:
        """The loss over the positions in ``mask`` (B x L booleans)."""
