"""The loss registry (:data:`LOSSES`): one line per loss, and ``build_loss`` turning CLI/config values into a loss.

Hyper-parameters arrive as a dict (``--set num_negatives=100`` gives ``{"num_negatives": "100"}``
or an int); each value is converted to the type of its dataclass field, unknown keys and
out-of-range values raise ``InputError`` naming the valid keys or values. ``K`` (the spec's
symbol) is accepted as an alias of ``num_negatives``.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import numpy as np

from seqbench.coerce import coerce
from seqbench.errors import InputError, did_you_mean
from seqbench.losses.aliases import canonical_param
from seqbench.losses.base import Loss
from seqbench.losses.bce import BCE
from seqbench.losses.bpr import BPR
from seqbench.losses.bpr_max import BPRMax
from seqbench.losses.cross_entropy import CrossEntropy, CumulativeCrossEntropy
from seqbench.losses.gbce import GBCE
from seqbench.losses.nce import NCE, NEG
from seqbench.losses.sampled_ce import SampledCE, ScaledCE
from seqbench.losses.sce import SCE
from seqbench.losses.top1 import TOP1
from seqbench.registry import Registry

LOSSES: Registry[type[Loss]] = Registry("loss", {
    "ce": CrossEntropy,
    "cce": CumulativeCrossEntropy,
    "bce": BCE,
    "bpr": BPR,
    "top1": TOP1,
    "bpr-max": BPRMax,
    "sampled-ce": SampledCE,
    "scaled-ce": ScaledCE,
    "nce": NCE,
    "neg": NEG,
    "gbce": GBCE,
    "sce": SCE,
})

POSITIONS = ("all", "last")
# Stands in for N while the catalogue is not known yet: every catalogue bound holds for it.
UNKNOWN_CATALOGUE = 2**62


def loss_class(name: str) -> type[Loss]:
    return LOSSES.get(name)


def default_params(name: str) -> dict[str, Any]:
    """The spec's defaults of a loss's hyper-parameters (None = derived from the batch/catalogue)."""
    return dataclasses.asdict(loss_class(name).Params())


def make_params(name: str, params: dict[str, object] | None, num_items: int | None) -> object:
    """Build and validate the Params dataclass of loss ``name`` from a dict of overrides.

    ``num_items=None`` checks everything that does not depend on the catalogue (when a run
    config is built, before any data set is loaded); the trainer checks again with the real N.
    """
    cls = loss_class(name).Params
    hints = typing.get_type_hints(cls)
    fields = [field.name for field in dataclasses.fields(cls)]
    values: dict[str, object] = {}
    for key, value in (params or {}).items():
        key = canonical_param(key) if canonical_param(key) in fields else key
        if key in values:
            raise InputError(f"parameter {key} of loss {name} was given twice (K is an alias of num_negatives)")
        if key not in fields:
            raise InputError(f"unknown parameter {key!r} for loss {name}{did_you_mean(key, fields)} (valid: {', '.join(fields)})")
        values[key] = coerce(key, value, hints[key])
    built = cls(**values)
    built.validate(UNKNOWN_CATALOGUE if num_items is None else num_items)
    return built


def build_loss(
    name: str,
    num_items: int,
    params: dict[str, object] | None = None,
    positions: str | None = None,
    item_counts: np.ndarray | None = None,
) -> Loss:
    """The loss ``name`` for a catalogue of ``num_items`` real items (ids 1..N)."""
    cls = loss_class(name)
    if num_items < 1:
        raise InputError(f"num_items must be >= 1 (got {num_items})")
    if positions is not None and positions not in POSITIONS:
        raise InputError(f"unknown positions {positions!r}; valid: {', '.join(POSITIONS)}")
    built = make_params(name, params, num_items)
    return cls(built, num_items, positions, item_counts=item_counts)  # type: ignore[arg-type]
