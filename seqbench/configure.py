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
from seqbench.devices import resolve_device
from seqbench.errors import InputError
from seqbench.losses.aliases import canonical_param
from seqbench.losses.registry import LOSSES, make_params
from seqbench.losses.registry import default_params as loss_defaults
from seqbench.losses.spec import parse_loss_spec
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
    loss_params = make_params(config.loss, config.loss_params, None)
    model_config(config.model, config.model_params)
    config.code = code_identity(config.loss, config.model, loss_params)
    return config


def loss_options(loss: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """A run's loss written in the spec language (``cce[dense]``, ``sce[b_y=128]``, as memprof and
    compare take it): the name, plus each bracketed option as a ``loss.KEY`` override unless the
    same key is also set (``--set``, which wins). A bare name adds nothing."""
    if "[" not in loss:
        return {"loss": loss}
    spec = parse_loss_spec(loss, dense_default=False)
    given = {key.partition(".")[2] or key for key in overrides}
    return {"loss": spec.name, **{f"loss.{key}": value for key, value in spec.params.items() if key not in given}}


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
    if getattr(params, "ce_impl", None) == "dense":
        _check_dense_logits(config, num_items)


def _check_dense_logits(config: RunConfig, num_items: int) -> None:
    """Refuse an explicitly dense CE whose logits alone cannot fit: it would otherwise die in the
    allocator mid-epoch (or swap the machine to a halt). The message carries memprof's prediction
    of the whole step, computed on fake tensors, only in this case (seconds)."""
    from seqbench.memprof.profile import memory_bytes  # lazy: memprof's fake-tensor machinery, needed only here

    device = resolve_device(config.device).type
    logits = config.batch_size * config.max_len * num_items * 4
    limit = memory_bytes(device)
    if logits <= limit:
        return
    needed = _predicted_step_bytes(config, num_items) or logits
    raise InputError(
        f"{config.loss} with ce_impl=dense at {num_items:,} items needs about {needed / 2**30:,.1f} GiB per training step "
        f"(memprof's prediction, batch {config.batch_size} x length {config.max_len}), more than the {limit / 2**30:,.1f} GiB "
        f"free on {device}: use --set ce_impl=chunked (the same exact loss in bounded memory) or ce_impl=auto"
    )


def _predicted_step_bytes(config: RunConfig, num_items: int) -> int | None:
    from seqbench.memprof.predict import PredictionError  # lazy: only when a dense CE may not fit
    from seqbench.memprof.profile import profile_step  # lazy: as above

    hidden = int(config.model_params.get("hidden_size", config.model_params.get("embedding_size", 64)))
    try:
        record = profile_step(config.model, config.loss, num_items, config.batch_size, config.max_len, hidden,
                              mode="predict", device="cpu", loss_params=dict(config.loss_params))
    except (PredictionError, InputError):
        return None
    return record.peak_bytes


