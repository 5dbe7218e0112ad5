"""Other spellings of loss hyper-parameters: ``K`` (the papers' symbol) for ``num_negatives``.

Kept apart from the loss registry so that the run config can read it without importing torch.
"""

from __future__ import annotations

PARAM_ALIASES: dict[str, str] = {"K": "num_negatives"}


def canonical_param(key: str) -> str:
    """The field name a loss hyper-parameter key means (``K`` -> ``num_negatives``)."""
    return PARAM_ALIASES.get(key, key)


def spellings(field: str) -> set[str]:
    """Every key that sets ``field`` (itself and its aliases)."""
    return {field, *(alias for alias, target in PARAM_ALIASES.items() if target == field)}
