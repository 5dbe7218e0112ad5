"""Model registry: CLI name -> class. Adding a model = one line in ``MODELS``."""

from __future__ import annotations

import inspect
from dataclasses import asdict, fields
from typing import Any

from seqbench.errors import InputError, did_you_mean, unknown_name
from seqbench.models.base import SequentialRecommender
from seqbench.models.bert4rec import BERT4Rec
from seqbench.models.gru4rec import GRU4Rec
from seqbench.models.s3rec import S3Rec
from seqbench.models.sasrec import SASRec

MODELS: dict[str, type[SequentialRecommender]] = {
    "gru4rec": GRU4Rec,
    "sasrec": SASRec,
    "bert4rec": BERT4Rec,
    "s3rec": S3Rec,
}


def model_names() -> list[str]:
    return list(MODELS)


def model_class(name: str) -> type[SequentialRecommender]:
    if name not in MODELS:
        raise InputError(unknown_name("model", name, MODELS))
    return MODELS[name]


def default_params(name: str) -> dict[str, Any]:
    """The config dataclass defaults (``None`` = filled in from the model's preset when built)."""
    return asdict(model_class(name).Config())


def make_config(name: str, params: dict[str, Any] | None = None) -> Any:
    cls = model_class(name)
    valid = [f.name for f in fields(cls.Config)]
    unknown = sorted(set(params or {}) - set(valid))
    if unknown:
        raise InputError(f"unknown parameter(s) {', '.join(unknown)} for model '{name}'{did_you_mean(unknown[0], valid)}: valid are {', '.join(valid)}")
    return cls.Config(**(params or {}))


def build_model(
    name: str, num_items: int, max_len: int, params: dict[str, Any] | None = None, num_attributes: int = 0
) -> SequentialRecommender:
    """Build a model with its published defaults overridden by ``params``; the caller seeds torch."""
    if num_items < 1 or max_len < 1:
        raise InputError(f"num_items and max_len must be >= 1, got {num_items} and {max_len}")
    cls = model_class(name)
    config = make_config(name, params)
    if "num_attributes" in inspect.signature(cls.__init__).parameters:
        return cls(config, num_items, max_len, num_attributes=num_attributes)
    return cls(config, num_items, max_len)
