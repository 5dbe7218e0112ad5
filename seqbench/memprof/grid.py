"""Many profiled steps: the catalogs and losses of a ``memprof`` request, checked and run in turn."""

from __future__ import annotations

import math
from collections.abc import Callable

from seqbench.errors import InputError, unknown_name
from seqbench.memprof.profile import Mode, ProfileRecord, Registries, StepShape, parse_loss_spec, profile_step, split_loss_list


def parse_catalogs(text: str) -> list[int]:
    """``1e4,1e5,1e6`` -> item counts; each must be a whole number >= 2."""
    catalogs = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        try:
            value = float(part)
        except ValueError:
            raise InputError(f"catalog {part!r} is not a number: write e.g. --catalog 1e4,1e5,1e6") from None
        if not math.isfinite(value) or value != int(value):
            raise InputError(f"catalog {part!r} is not a whole number of items: write e.g. 1e5 or 100000")
        if value < 2:
            raise InputError(f"catalog {part!r} is below 2 items: a softmax needs at least 2 classes")
        catalogs.append(int(value))
    if not catalogs:
        raise InputError("--catalog is empty: write e.g. --catalog 1e4,1e5,1e6")
    return catalogs


def check_losses(text: str, registries: Registries) -> list[str]:
    labels = split_loss_list(text)
    if not labels:
        raise InputError("--losses is empty: write e.g. --losses cce,cce[chunked],sce")
    for label in labels:
        name = parse_loss_spec(label).name
        if name not in registries.loss_names:
            raise InputError(unknown_name("loss", name, registries.loss_names))
    return labels


def profile_grid(
    catalogs: list[int],
    losses: list[str],
    model: str,
    batch_size: int,
    max_len: int,
    hidden: int,
    mode: Mode,
    device: str,
    breakdown: bool,
    registries: Registries,
    say: Callable[[str], None] | None = None,
) -> list[ProfileRecord]:
    """One step per (catalog, loss), every shape checked before the first step runs."""
    for catalog in catalogs:  # every shape is checked before the first (possibly long) step runs
        StepShape(catalog, batch_size, max_len, hidden).validate()
    registries.model_params(model, hidden)  # an unknown model name fails here, before any step
    records = []
    for catalog in catalogs:
        for loss in losses:
            if say is not None:
                say(f"memprof: {loss} @ {catalog:,} items ({mode})")
            records.append(
                profile_step(model, loss, catalog, batch_size, max_len, hidden, mode, device, None, breakdown, registries)
            )
    return records
