"""Search spaces for ``seqbench tune``: one typed description per tunable config key.

A ``Space`` names a config key exactly as ``--set`` accepts it (``lr``, ``model.dropout``,
``loss.num_negatives``) and its range: ``low``/``high`` with a scale (log or linear) and a kind
(int or float), or a tuple of ``choices``. Each loss declares its own spaces next to its
``Params`` (the ``space`` class attribute of the loss), so a new loss brings its space with it;
the spaces every loss shares (optimiser, regularisation, early stopping) are ``SHARED_SPACE`` below.

Pure data: no Optuna import here, so the losses can declare spaces without the ``tune`` extra.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from seqbench.errors import InputError


@dataclass(frozen=True)
class Space:
    name: str  # config key, as --set spells it
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise InputError(f"search space '{self.name}': {problem}")

    def _problem(self) -> str:
        if self.choices:
            if self.low is not None or self.high is not None:
                return "give either choices or low/high, not both"
            return "" if len(set(map(repr, self.choices))) == len(self.choices) else "choices repeat"
        if self.low is None or self.high is None:
            return "needs low and high (or choices)"
        if not self.low < self.high:
            return f"low must be < high, got {self.low} and {self.high}"
        if self.log and self.low <= 0:
            return f"a log scale needs low > 0, got {self.low}"
        if self.integer and not (float(self.low).is_integer() and float(self.high).is_integer()):
            return f"an int space needs integer bounds, got {self.low} and {self.high}"
        return ""

    @property
    def kind(self) -> str:
        return "choice" if self.choices else ("int" if self.integer else "float")

    def points(self) -> list[Any]:
        """Representative values (the bounds and the middle on the space's scale, or every choice)."""
        if self.choices:
            return list(self.choices)
        assert self.low is not None and self.high is not None
        low, high = float(self.low), float(self.high)
        middle = math.sqrt(low * high) if self.log else (low + high) / 2
        values = [low, middle, high]
        return [round(v) for v in values] if self.integer else values

    def distribution(self) -> Any:
        """The Optuna distribution of this space (Optuna is imported only here)."""
        from optuna.distributions import (  # optional: optuna
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.choices:
            return CategoricalDistribution(self.choices)
        assert self.low is not None and self.high is not None
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), log=self.log)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (hashed into the study id, so a changed range is a new study)."""
        if self.choices:
            return {"name": self.name, "choices": list(self.choices)}
        return {"name": self.name, "low": self.low, "high": self.high, "log": self.log, "kind": self.kind}

    def scope(self) -> tuple[str, str]:
        """(``loss``/``model``/``""``, field name): where the key lands in the run config."""
        scope, dot, field = self.name.partition(".")
        return (scope, field) if dot else ("", self.name)


def real(name: str, low: float, high: float, log: bool = False) -> Space:
    return Space(name, low, high, log=log)


def integer(name: str, low: int, high: int, log: bool = False) -> Space:
    return Space(name, low, high, log=log, integer=True)


def choice(name: str, *options: Any) -> Space:
    return Space(name, choices=tuple(options))


# The spaces every loss is tuned over, whatever its own: the optimiser, the model's regularisation
# and the early-stopping patience (the maximum epochs stay fixed by --epochs, so every loss gets
# the same epoch budget). ``model.*`` keys apply only to models that have that field (GRU4Rec has
# no attention dropout). Ranges follow common practice for these models (lr 1e-4..1e-2 for Adam;
# dropout up to the 0.5 of SASRec's and S3-Rec's code); patience 40 is where BCE caught up on LastFM.
SHARED_SPACE: tuple[Space, ...] = (
    real("lr", 1e-4, 1e-2, log=True),
    choice("weight_decay", 0.0, 1e-6, 1e-5, 1e-4),
    real("model.dropout", 0.0, 0.6),
    real("model.attn_dropout", 0.0, 0.6),
    choice("patience", 10, 20, 40),
)


# Loss fields that count items of the catalogue (negatives drawn per positive, items per bucket):
# a value above the data set's N only repeats items, and ``check_catalogue`` refuses an explicit
# ``num_negatives`` above N, so a search never proposes one.
ITEM_COUNTS: frozenset[str] = frozenset({"num_negatives", "b_y"})


def cap_at_catalogue(space: Space, num_items: int) -> Space:
    """``space`` with its item-counting range cut at ``num_items``; a range that collapses to one
    value becomes a single choice (still shown in the chosen hyper-parameters)."""
    scope, name = space.scope()
    if scope != "loss" or name not in ITEM_COUNTS:
        return space
    if space.choices:
        kept = tuple(c for c in space.choices if c <= num_items)
        return space if kept == space.choices else choice(space.name, *(kept or (num_items,)))
    assert space.low is not None and space.high is not None
    high = min(space.high, num_items)
    low = min(space.low, high)
    if low == space.low and high == space.high:
        return space
    if low == high:
        return choice(space.name, int(high) if space.integer else high)
    return Space(space.name, low, high, log=space.log, integer=space.integer)
