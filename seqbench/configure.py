"""A run config checked against the registries: the one way to build a :class:`RunConfig` that
names a real loss and model with valid parameters (``train``, ``compare``, ``tune``, the tuner's
trials and every executor go through :func:`make_config`)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from seqbench.config import RunConfig, build_config
from seqbench.data.prepare import ensure_prepared
from seqbench.data.sequences import read_meta
from seqbench.errors import InputError
from seqbench.losses.aliases import canonical_param
from seqbench.losses.registry import LOSSES, make_params
from seqbench.losses.registry import default_params as loss_defaults
from seqbench.models.registry import MODELS
from seqbench.models.registry import default_params as model_defaults
from seqbench.models.registry import make_config as model_config
from seqbench.plugins import code_identity


def registry_keys() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Hyper-parameter names of every loss and model, for routing and checking ``--set`` keys
    (built again only when a plugin has registered more); callers must not mutate it."""
    return _registry_keys(len(LOSSES), len(MODELS))


@functools.cache
def _registry_keys(losses: int, models: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    return (
        {name: list(loss_defaults(name)) for name in LOSSES.names()},
        {name: list(model_defaults(name)) for name in MODELS},
    )


def make_config(base: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A validated run config: its fields, and its loss and model parameters against the
    registries (types and ranges), so that a bad value fails here, before any data is loaded or
    any run of a grid is trained. The parameters are kept as given: they are part of run ids."""

    loss_keys, model_keys = registry_keys()
    config = build_config(base, overrides, loss_keys, model_keys)
    make_params(config.loss, config.loss_params, None)
    model_config(config.model, config.model_params)
    config.code = code_identity(config.loss, config.model)
    return config


def check_catalogues(configs: list[RunConfig], data_dir: Path, mirror: Path | None = None) -> None:
    """:func:`check_catalogue` for every config, from each data set's meta.json, before any run
    trains (``train`` and ``compare``; a tuner's sampled values are bounded by its own space)."""

    sizes: dict[str, int] = {}
    for config in configs:
        if config.dataset not in sizes:
            ensure_prepared(config.dataset, data_dir, mirror)
            sizes[config.dataset] = int(read_meta(config.dataset, data_dir)["num_items"])
        check_catalogue(config, sizes[config.dataset])


def check_catalogue(config: RunConfig, num_items: int) -> None:
    """The checks that need the data set's catalogue size N, before anything is allocated.

    An explicit ``num_negatives`` above N is refused (K = 100000 on 100 items would allocate
    gigabytes for negatives that repeat); the spec's defaults (K = 256) stay valid on small
    test catalogues, where they sample with replacement.
    """

    params = make_params(config.loss, config.loss_params, num_items)
    given = {canonical_param(key) for key in config.loss_params} & {"num_negatives"}
    negatives = getattr(params, "num_negatives", None)
    if given and negatives is not None and negatives > num_items:
        raise InputError(
            f"loss.num_negatives={negatives} is more than the {num_items} items of data set '{config.dataset}': "
            f"choose at most {num_items}"
        )


