"""The prepared-data contract: ragged sequences, splits, and their Parquet layout.

A prepared data set lives in ``<data_dir>/<name>/``:

- ``train.parquet``: ``user`` (int64), ``items`` (list<int32>): each user's training sequence.
- ``valid.parquet`` / ``test.parquet``: ``user``, ``history`` (list<int32>), ``target`` (int32):
  the model sees ``history`` (chronological) and must rank ``target`` among all items.
- ``item_attributes.parquet`` (optional): ``item`` (int32, 1..N), ``attributes`` (list<int32>, 1..A).
- ``meta.json``: ``name``, ``num_items``, ``num_users``, ``num_attributes``, the recipe, source
  checksums and statistics.

Item ids are 1..N everywhere; 0 is padding and never a real item.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seqbench.atomic import recover
from seqbench.errors import InputError
from seqbench.names import check_name

META_FILE = "meta.json"


@dataclass(frozen=True)
class Ragged:
    """Variable-length integer rows stored as one flat array plus offsets (CSR without columns)."""

    values: np.ndarray  # int64, all rows concatenated
    offsets: np.ndarray  # int64, len(rows) + 1, offsets[0] == 0

    @classmethod
    def from_lists(cls, rows: list[list[int]] | list[np.ndarray]) -> Ragged:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = (
            np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
            if len(rows) and offsets[-1] > 0
            else np.zeros(0, dtype=np.int64)
        )
        return cls(values, offsets)

    @classmethod
    def from_arrow(cls, column: pa.ChunkedArray | pa.Array) -> Ragged:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        offsets = array.offsets.to_numpy().astype(np.int64)
        values = array.values.to_numpy().astype(np.int64)[offsets[0] : offsets[-1]]
        return cls(values, offsets - offsets[0])

    def to_arrow(self) -> pa.Array:
        return pa.ListArray.from_arrays(
            pa.array(self.offsets.astype(np.int32)), pa.array(self.values.astype(np.int32))
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def to_lists(self) -> list[list[int]]:
        return [self.row(i).tolist() for i in range(len(self))]

    def take(self, rows: np.ndarray) -> Ragged:
        """The sub-collection of the given rows, in that order (vectorised)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = np.repeat(self.offsets[rows], lengths)
        within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
        return Ragged(self.values[starts + within], offsets)

    def coo(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(row position, value) pairs of the given rows: for scattering into a dense mask."""
        sub = self if rows is None else self.take(rows)
        row_ids = np.repeat(np.arange(len(sub), dtype=np.int64), sub.lengths)
        return row_ids, sub.values


def windows_ending_at(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Left-padded windows ``values[max(start, end - width):end]`` as an (n x width) int64 matrix."""
    cols = np.arange(width, dtype=np.int64)
    index = ends[:, None] - width + cols[None, :]
    valid = index >= starts[:, None]
    out = np.zeros((len(ends), width), dtype=np.int64)
    out[valid] = values[index[valid]]
    return out


def left_pad_last(sequences: Ragged, width: int) -> np.ndarray:
    """The last ``width`` items of every row, left-padded with 0 (n x width)."""
    return windows_ending_at(sequences.values, sequences.offsets[:-1], sequences.offsets[1:], width)


@dataclass
class EvalSplit:
    """Users to evaluate: each has a chronological history and one held-out target item."""

    users: np.ndarray  # int64
    histories: Ragged
    targets: np.ndarray  # int64, 1..N

    def __len__(self) -> int:
        return len(self.targets)

    def inputs(self, max_len: int) -> np.ndarray:
        """Model inputs: the last ``max_len`` history items, left-padded (U x max_len)."""
        return left_pad_last(self.histories, max_len)


@dataclass
class PreparedDataset:
    """A prepared data set in memory, as read by :func:`load_prepared`."""

    name: str
    num_items: int
    train_users: np.ndarray
    train: Ragged
    valid: EvalSplit
    test: EvalSplit
    item_attributes: Ragged | None = None  # row i = attributes of item i (row 0 empty)
    num_attributes: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of what a run sees (catalogue size, training sequences, validation and test
        users, histories and targets): a data set prepared again with another recipe or source has
        another one, so a run stored on the old data is never mistaken for one on the new."""
        digest = hashlib.sha256(str(int(self.num_items)).encode())
        arrays = [self.train_users, self.train.values, self.train.offsets]
        for split in (self.valid, self.test):
            arrays += [split.users, split.targets, split.histories.values, split.histories.offsets]
        for array in arrays:
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]

    def item_counts(self) -> np.ndarray:
        """Occurrences of each item id (index 0 = padding, always 0) in the training sequences."""
        return np.bincount(self.train.values, minlength=self.num_items + 1).astype(np.int64)


def _eval_table(split: EvalSplit) -> pa.Table:
    return pa.table(
        {
            "user": pa.array(split.users.astype(np.int64)),
            "history": split.histories.to_arrow(),
            "target": pa.array(split.targets.astype(np.int32)),
        }
    )


def _read_eval(path: Path) -> EvalSplit:
    table = pq.read_table(path)
    return EvalSplit(
        users=table.column("user").to_numpy().astype(np.int64),
        histories=Ragged.from_arrow(table.column("history")),
        targets=table.column("target").to_numpy().astype(np.int64),
    )


def save_prepared(dataset: PreparedDataset, directory: Path) -> None:
    """Write ``dataset`` into ``directory`` (which the caller makes atomic)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"user": pa.array(dataset.train_users.astype(np.int64)), "items": dataset.train.to_arrow()}),
        directory / "train.parquet",
    )
    pq.write_table(_eval_table(dataset.valid), directory / "valid.parquet")
    pq.write_table(_eval_table(dataset.test), directory / "test.parquet")
    if dataset.item_attributes is not None:
        items = np.arange(len(dataset.item_attributes), dtype=np.int32)
        pq.write_table(
            pa.table({"item": pa.array(items), "attributes": dataset.item_attributes.to_arrow()}),
            directory / "item_attributes.parquet",
        )
    meta = dict(dataset.meta)
    meta.update(name=dataset.name, num_items=int(dataset.num_items), num_attributes=int(dataset.num_attributes))
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))


def dataset_dir(name: str, data_dir: Path) -> Path:
    """``data_dir/name``, once ``name`` is known to be a safe folder name."""
    return Path(data_dir) / check_name("data set", name)


def is_prepared(name: str, data_dir: Path) -> bool:
    directory = dataset_dir(name, data_dir)
    recover(directory)  # a replacement killed between its two renames
    return (directory / META_FILE).is_file()


def damaged(directory: Path, what: str) -> InputError:
    return InputError(
        f"prepared data set {directory} is damaged ({what}): rebuild it with "
        f"`seqbench prepare {directory.name} --force --data-dir {directory.parent}`"
    )


def read_meta(name: str, data_dir: Path) -> dict[str, Any]:
    """The prepared data set's meta.json; an unreadable or incomplete one is an input error."""
    path = dataset_dir(name, data_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise damaged(path.parent, f"{META_FILE}: {type(error).__name__}") from None
    if not isinstance(meta, dict):
        raise damaged(path.parent, f"{META_FILE} is not a JSON object")
    try:
        if int(meta["num_items"]) < 1:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise damaged(path.parent, f"{META_FILE} has no valid num_items") from None
    return meta


def load_prepared(name: str, data_dir: Path) -> PreparedDataset:
    """Read a prepared data set; a clear error says which ``prepare`` to run if it is missing."""
    directory = dataset_dir(name, data_dir)
    if not is_prepared(name, data_dir):
        raise InputError(
            f"data set '{name}' is not prepared in {Path(data_dir)}: run `seqbench prepare {name}` "
            f"(with --data-dir {data_dir} if it is not the default)"
        )
    meta = read_meta(name, data_dir)
    try:
        return _read_tables(name, directory, meta)
    except (OSError, ValueError, KeyError, IndexError, pa.ArrowException) as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise damaged(directory, reason) from None


def _read_tables(name: str, directory: Path, meta: dict[str, Any]) -> PreparedDataset:
    train = pq.read_table(directory / "train.parquet")
    attributes = None
    attr_path = directory / "item_attributes.parquet"
    if attr_path.is_file():
        attributes = Ragged.from_arrow(pq.read_table(attr_path).column("attributes"))
    return PreparedDataset(
        name=name,
        num_items=int(meta["num_items"]),
        train_users=train.column("user").to_numpy().astype(np.int64),
        train=Ragged.from_arrow(train.column("items")),
        valid=_read_eval(directory / "valid.parquet"),
        test=_read_eval(directory / "test.parquet"),
        item_attributes=attributes,
        num_attributes=int(meta.get("num_attributes", 0)),
        meta=meta,
    )
