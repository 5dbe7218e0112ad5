"""The loss-spec language: one loss with its options written as one token, ``NAME[options]``.

- ``cce`` -- the loss with its defaults (for ``ce``/``cce``: ``ce_impl=dense``, the baseline
  that memory ratios are taken against);
- ``cce[chunked]`` -- shorthand for ``cce[ce_impl=chunked]``: any :class:`CeImpl` value alone
  names the cross-entropy implementation (``dense``, ``chunked``, ``fused``, ``auto``, ``cut``);
- ``sce[b_y=128;mix=true]`` -- ``key=value`` options separated by ``;`` (the keys of ``--set``).

Used by ``seqbench memprof --losses``, the benchmarks, and matching the labels that reports give
a chunked run (``cce[chunked]``). In a run config the same choice is ``--set ce_impl=chunked``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from seqbench.coerce import parse_value
from seqbench.errors import InputError
from seqbench.losses.cross_entropy import CE_IMPLS, CeImpl

CE_LOSSES = ("ce", "cce")


@dataclass(frozen=True)
class LossSpec:
    """A table row: ``cce[chunked]`` is loss ``cce`` with ``ce_impl=chunked``."""

    label: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)


def split_loss_list(text: str) -> list[str]:
    """Split on commas outside brackets, so ``sce[b_y=128],cce`` is two entries."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [part for part in parts if part]


def parse_loss_spec(text: str, dense_default: bool = True) -> LossSpec:
    """``name``, ``name[impl]`` (ce/cce) or ``name[key=value;key=value]``; ``dense_default=False``
    keeps only the written options (a run's bare ``cce`` keeps its config's ``ce_impl=auto``)."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_-]+)\s*(?:\[(.*)\])?\s*", text)
    if match is None:
        raise InputError(f"bad loss {text!r}: write NAME, cce[chunked] or NAME[key=value;key=value]")
    name, inside = match.group(1), match.group(2)
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (inside or "").split(";"))):
        if "=" in item:
            key, value = (piece.strip() for piece in item.split("=", 1))
            params[key] = parse_value(value)
        elif name in CE_LOSSES and item in CE_IMPLS:
            params["ce_impl"] = CeImpl(item)
        else:
            raise InputError(
                f"bad loss option {item!r} in {text!r}: write key=value, or {'/'.join(CE_IMPLS)} for ce/cce"
            )
    if name in CE_LOSSES and dense_default:
        # A bare ce/cce is the dense baseline the table's ratios are taken against.
        params.setdefault("ce_impl", CeImpl.DENSE)
    return LossSpec(label=text.strip(), name=name, params=params)
