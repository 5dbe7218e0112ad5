"""``seqbench prepare --from FILE --name NAME``: a local interactions table prepared as a data set
by the same pipeline as a registered one (:mod:`seqbench.data.tables` reads it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqbench.data.download import sha256_of
from seqbench.data.prepare import prepare
from seqbench.data.registry import DatasetEntry, Recipe, Registry, SplitConfig
from seqbench.data.sequences import is_prepared, read_meta
from seqbench.data.tables import table_entry
from seqbench.errors import InputError


@dataclass(frozen=True)
class TableRequest:
    """``prepare --from FILE --name NAME`` and its column and recipe options."""

    path: Path
    name: str | None
    user: str = "user"
    item: str = "item"
    timestamp: str = "timestamp"
    rating: str | None = None
    min_rating: float | None = None
    user_k: int = 5
    item_k: int = 5
    dedup: str = "first"
    split: str = "leave-one-out"

    def entry(self) -> DatasetEntry:
        if not self.name:
            raise InputError("--from needs --name: the name your data set gets (e.g. --name mydata)")
        if self.min_rating is not None and self.rating is None:
            raise InputError("--min-rating needs --rating-col: the column that holds the ratings")
        columns = {"user": self.user, "item": self.item, "timestamp": self.timestamp}
        if self.rating is not None:
            columns["rating"] = self.rating
        if len(set(columns.values())) < len(columns):
            raise InputError(f"two roles name the same column ({', '.join(f'{k}={v}' for k, v in columns.items())}): give each its own")
        recipe = Recipe(dedup=self.dedup, user_k=self.user_k, item_k=self.item_k, min_rating=self.min_rating)
        return table_entry(self.path, self.name, columns, recipe, SplitConfig(kind=self.split))


def prepare_table(request: TableRequest, data_dir: Path, force: bool = False, progress: bool = False) -> dict[str, Any]:
    """Prepare a local table as a data set in ``data_dir/NAME``; its statistics row, as ``prepare`` returns."""
    entry = request.entry()
    if not force:
        _check_same_recipe(entry, data_dir)
    return prepare(entry.name, data_dir, None, force, progress, registry=Registry({entry.name: entry}))


def _check_same_recipe(entry: DatasetEntry, data_dir: Path) -> None:
    """A data set prepared before under this name must come from the same file, columns and recipe:
    otherwise "already prepared" would hide that the request was not applied."""
    if not is_prepared(entry.name, data_dir):
        return
    meta = read_meta(entry.name, data_dir)
    source = entry.files[0]
    stored = (meta.get("sources") or [{}])[0]
    now = {"file": sha256_of(Path(source.url)), "columns": source.columns, "recipe": dataclasses.asdict(entry.recipe),
           "split": entry.split.kind}
    before = {"file": stored.get("sha256"), "columns": stored.get("columns"), "recipe": meta.get("recipe"),
              "split": (meta.get("split") or {}).get("kind")}
    changed = [key for key in now if now[key] != before[key]]
    if changed:
        raise InputError(f"data set '{entry.name}' was prepared before from a different {' and '.join(changed)}: "
                         "add --force to rebuild it (runs stored on the old one keep their ids), or choose another --name")
