"""Model registry: CLI name -> class. Adding a model = one line in ``MODELS``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

from seqbench.coerce import coerce_fields
from seqbench.errors import InputError, did_you_mean
from seqbench.models.base import SequentialRecommender
from seqbench.models.bert4rec import BERT4Rec
from seqbench.models.gru4rec import GRU4Rec
from seqbench.models.s3rec import S3Rec
from seqbench.models.sasrec import SASRec
from seqbench.registry import Registry

MODELS: Registry[type[SequentialRecommender]] = Registry("model", {
    "gru4rec": GRU4Rec,
    "sasrec": SASRec,
    "bert4rec": BERT4Rec,
    "s3rec": S3Rec,
})


def model_names() -> list[str]:
    return MODELS.names()


def model_class(name: str) -> type[SequentialRecommender]:
    return MODELS.get(name)


def default_params(name: str) -> dict[str, Any]:
    """The config dataclass defaults (``None`` = filled in from the model's preset when built)."""
    return asdict(model_class(name).Config())


def make_config(name: str, params: dict[str, Any] | None = None) -> Any:
    """The model's typed config from ``--set model.KEY=VALUE`` values: unknown keys, values of the
    wrong type and values out of range are input errors, found before anything is built."""
    cls = model_class(name)
    valid = [f.name for f in fields(cls.Config)]
    unknown = sorted(set(params or {}) - set(valid))
    if unknown:
        raise InputError(
            f"unknown parameter(s) {', '.join(unknown)} for model '{name}'{did_you_mean(unknown[0], valid)}: valid are {', '.join(valid)}"
        )
    values = coerce_fields(cls.Config, dict(params or {}), "model.")
    for key, value in values.items():
        _check_range(key, value)
    return cls.Config(**values)


def _check_range(key: str, value: Any) -> None:
    """Ranges by naming convention of the model configs: sizes and counts, rates, weights."""
    if value is None or isinstance(value, (bool, str)):
        return
    if "dropout" in key or key == "mask_prob":
        ok, wanted = 0.0 <= value < 1.0, "in [0, 1)"
    elif isinstance(value, int):
        ok, wanted = value >= 1, ">= 1"
    elif key.endswith("_weight"):
        ok, wanted = value >= 0, ">= 0"
    else:  # learning rates, eps, init_std
        ok, wanted = value > 0, "> 0"
    if not ok:
        raise InputError(f"model.{key} must be {wanted}, got {value}")


def build_model(
    name: str, num_items: int, max_len: int, params: dict[str, Any] | None = None, num_attributes: int = 0
) -> SequentialRecommender:
    """Build a model with its published defaults overridden by ``params``; the caller seeds torch."""
    if num_items < 1 or max_len < 1:
        raise InputError(f"num_items and max_len must be >= 1, got {num_items} and {max_len}")
    cls = model_class(name)
    config = make_config(name, params)
    if "num_attributes" in inspect.signature(cls.__init__).parameters:
        with_attributes: Callable[..., SequentialRecommender] = cls  # a subclass whose __init__ takes them (checked above)
        return with_attributes(config, num_items, max_len, num_attributes=num_attributes)
    return cls(config, num_items, max_len)
