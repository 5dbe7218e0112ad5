"""The one shape of every registry (losses, models, executors, tables): names in registration
order, ``get`` with a near-name suggestion on a typo, ``register`` that refuses a clash.

Each registry keeps its own ``build`` function beside it (``build_loss``, ``build_model``,
``make_executor``): what building needs differs, how a name is looked up does not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from seqbench.errors import InputError, unknown_name

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Name -> entry; ``what`` names the kind in messages ("loss", "model", "executor", "table")."""

    def __init__(self, what: str, entries: Mapping[str, T] | None = None) -> None:
        self.what = what
        self._entries: dict[str, T] = dict(entries or {})

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> T:  # type: ignore[override]  # an unknown name is an input error, never None
        if name not in self._entries:
            raise InputError(unknown_name(self.what, name, self._entries))
        return self._entries[name]

    def register(self, name: str, entry: T) -> None:
        if name in self._entries and self._entries[name] is not entry:
            raise InputError(f"{self.what} '{name}' is already registered: give yours another name")
        self._entries[name] = entry

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
