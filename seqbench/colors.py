"""One colour per loss in every figure (compare's figures and memprof's plot alike).

The colour depends on the loss name only, never on which other losses a figure shows, so ``cce``
has the same colour in the frontier, the time curves, the per-timestamp figure and the memory
plot. Variants of one loss (``cce[chunked]``, ``sampled-ce[num_negatives=64]``) share its colour
and differ in line style.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Literal

# Registry order (seqbench.losses.registry), written out so that this module needs no torch.
LOSS_ORDER = ("ce", "cce", "bce", "bpr", "top1", "bpr-max", "sampled-ce", "scaled-ce", "nce", "neg", "gbce", "sce")
# tab10 without its grey, then two darker tab20 shades: twelve colours a reader tells apart.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39",
)
# A matplotlib line style: a named one, or (offset, (on, off, ...)) dashes.
LineStyle = Literal["-", "--", ":", "-."] | tuple[float, tuple[float, ...]]
LINESTYLES: tuple[LineStyle, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def base_loss(label: str) -> str:
    """``cce[chunked]`` -> ``cce``."""
    return str(label).split("[", 1)[0]


def loss_color(label: str) -> str:
    name = base_loss(label)
    if name in LOSS_ORDER:
        return PALETTE[LOSS_ORDER.index(name)]
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]  # a user's loss: stable, if shared


def loss_colors(labels: Sequence[str]) -> dict[str, str]:
    return {label: loss_color(label) for label in sorted(set(labels))}


def variant_styles(labels: Sequence[str]) -> dict[str, tuple[LineStyle, str]]:
    """(line style, marker) per label: the plain loss solid, each variant of it another style."""
    styles: dict[str, tuple[LineStyle, str]] = {}
    by_base: dict[str, list[str]] = {}
    for label in sorted(set(labels), key=lambda text: (base_loss(text), "[" in text, text)):
        by_base.setdefault(base_loss(label), []).append(label)
    for variants in by_base.values():
        for i, label in enumerate(variants):
            styles[label] = (LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)])
    return styles


__all__ = ["base_loss", "loss_color", "loss_colors", "variant_styles"]
