"""From raw interaction rows to chronological per-user sequences (protocol.md, Data).

Order of operations: sort each user's events by time (stable: ties keep the file's row order),
drop duplicates as configured (``first`` then keeps the earliest event of a user-item pair), drop
low ratings if asked, iterate k-core filtering until nothing changes, remap ids to 1..N.
Everything is vectorised over integer codes; no per-user Python work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from seqbench.data.registry import Recipe
from seqbench.data.sequences import Ragged
from seqbench.errors import InputError


@dataclass
class FilterReport:
    rows_parsed: int = 0
    rows_below_min_rating: int = 0
    duplicates_removed: int = 0
    kcore_iterations: int = 0
    rows_removed_by_kcore: int = 0
    users_removed_by_kcore: int = 0
    items_removed_by_kcore: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sequences:
    """Chronological sequences with remapped ids: row r belongs to user ``user_ids[r]``."""

    user_ids: np.ndarray  # original user ids, one per row, sorted
    item_ids: np.ndarray  # original item ids; item k (1..N) is item_ids[k - 1]
    items: Ragged  # remapped item ids 1..N
    timestamps: Ragged | None  # aligned with ``items`` when the source has timestamps

    @property
    def num_items(self) -> int:
        return len(self.item_ids)


def chronological(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by user (ascending id), each user's events by time; ties keep row order."""
    user_codes = pd.factorize(frame["user"], sort=True)[0]
    row = np.arange(len(frame))
    keys = (row, frame["timestamp"].to_numpy(), user_codes) if "timestamp" in frame else (row, user_codes)
    return frame.iloc[np.lexsort(keys)].reset_index(drop=True)


def deduplicate(frame: pd.DataFrame, mode: str) -> pd.DataFrame:
    """``exact``: identical rows; ``first``: every repeat of a user-item pair after its first event."""
    if mode == "none":
        return frame
    columns = ["user", "item"] if mode == "first" else [c for c in ("user", "item", "timestamp") if c in frame]
    if mode not in ("first", "exact"):
        raise InputError(f"unknown dedup mode '{mode}': choose none, exact or first")
    return frame[~frame.duplicated(columns, keep="first").to_numpy()].reset_index(drop=True)


def kcore(frame: pd.DataFrame, user_k: int, item_k: int) -> tuple[pd.DataFrame, int]:
    """Remove users with < user_k and items with < item_k rows, repeatedly until stable."""
    if user_k <= 1 and item_k <= 1:
        return frame, 0
    users = pd.factorize(frame["user"])[0]
    items = pd.factorize(frame["item"])[0]
    keep = np.ones(len(frame), dtype=bool)
    iterations = 0
    while True:
        iterations += 1
        user_counts = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        item_counts = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        survives = keep & (user_counts[users] >= user_k) & (item_counts[items] >= item_k)
        if survives.sum() == keep.sum():
            break
        keep = survives
    return frame[keep].reset_index(drop=True), iterations


def filter_interactions(frame: pd.DataFrame, recipe: Recipe, source: str) -> tuple[pd.DataFrame, FilterReport]:
    """Apply the recipe; no rows left is an input error naming the recipe to relax."""
    report = FilterReport(rows_parsed=len(frame))
    if len(frame) == 0:
        raise InputError(f"the source files of {source} hold no interactions: check that they are the published files")
    frame = chronological(frame)
    if recipe.min_rating is not None:
        if "rating" not in frame:
            raise InputError(f"min_rating is set but {source} has no ratings: remove min_rating from the recipe")
        low = (frame["rating"] < recipe.min_rating).to_numpy()
        report.rows_below_min_rating = int(low.sum())
        frame = frame[~low].reset_index(drop=True)
    before = len(frame)
    frame = deduplicate(frame, recipe.dedup)
    report.duplicates_removed = before - len(frame)
    before, users_before, items_before = len(frame), frame["user"].nunique(), frame["item"].nunique()
    frame, report.kcore_iterations = kcore(frame, recipe.user_k, recipe.item_k)
    report.rows_removed_by_kcore = before - len(frame)
    report.users_removed_by_kcore = users_before - frame["user"].nunique()
    report.items_removed_by_kcore = items_before - frame["item"].nunique()
    if len(frame) == 0:
        raise InputError(
            f"no users left after filtering {source} (user_k={recipe.user_k}, item_k={recipe.item_k}, "
            f"min_rating={recipe.min_rating}): lower k or min_rating in the registry entry"
        )
    return frame, report


def build_sequences(frame: pd.DataFrame, catalog: np.ndarray | None = None) -> Sequences:
    """Remap a chronological frame to ids 1..N (items sorted by original id; 0 stays padding).

    The catalogue is the items that occur, or ``catalog`` (sorted original ids, a superset of
    them) when items nobody picked belong to it too.
    """
    user_codes, user_ids = pd.factorize(frame["user"], sort=True)
    if catalog is None:
        item_codes, item_ids = pd.factorize(frame["item"], sort=True)
    else:
        item_ids = np.asarray(catalog)
        item_codes = pd.Index(item_ids).get_indexer(frame["item"])
        if np.any(item_codes < 0):
            raise ValueError("build_sequences: an item is not in the given catalogue")
    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(user_codes, minlength=len(user_ids)), out=offsets[1:])
    if np.any(np.diff(user_codes) < 0):
        raise ValueError("build_sequences needs rows grouped by user: call chronological() first")
    items = Ragged(item_codes.astype(np.int64) + 1, offsets)
    timestamps = Ragged(frame["timestamp"].to_numpy(dtype=np.int64), offsets) if "timestamp" in frame else None
    return Sequences(np.asarray(user_ids), np.asarray(item_ids), items, timestamps)


def remap_attributes(pairs: pd.DataFrame, item_ids: np.ndarray) -> tuple[Ragged, np.ndarray]:
    """Attributes of items 1..N as a Ragged (row 0 = padding, empty), attribute ids 1..A.

    Attribute ids are remapped in sorted order of the original ids, over the attributes of kept
    items only; each item's attributes are unique and sorted (S3-Rec uses them as a multi-hot set).
    Returns the Ragged and the original attribute ids (attribute a is ``originals[a - 1]``).
    """
    position = pd.Index(item_ids).get_indexer(pairs["item"])
    kept = pairs[position >= 0]
    item = position[position >= 0] + 1
    codes, originals = pd.factorize(kept["attribute"], sort=True)
    table = pd.DataFrame({"item": item, "attribute": codes.astype(np.int64) + 1}).drop_duplicates()
    table = table.sort_values(["item", "attribute"], kind="stable")
    counts = np.bincount(table["item"].to_numpy(), minlength=len(item_ids) + 1)
    offsets = np.zeros(len(item_ids) + 2, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Ragged(table["attribute"].to_numpy(dtype=np.int64), offsets), np.asarray(originals)
