"""A user's own interactions: a CSV, TSV or Parquet table with a user, an item and a timestamp
column (names of your choosing), optionally a rating. The ``table`` format of the registry and of
``seqbench prepare --from FILE``.

Users and items may be any text or numbers (they are re-indexed when the data set is built);
timestamps are numbers (seconds, or any increasing unit) or dates that pandas reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from seqbench.data.registry import DatasetEntry, Recipe, SourceFile, SplitConfig, check_entry, load_registry
from seqbench.errors import InputError
from seqbench.names import check_name

ROLES = ("user", "item", "timestamp", "rating")
DEFAULT_COLUMNS = {"user": "user", "item": "item", "timestamp": "timestamp"}
DELIMITERS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


def table_kind(path: Path) -> str:
    """``parquet``, ``.csv`` or ``.tsv``: what the file name says (a trailing ``.gz`` is allowed for text)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in (".parquet", ".pq"):
        return "parquet"
    if last in DELIMITERS:
        return last
    raise InputError(f"{Path(path).name}: a table must be .csv, .tsv or .parquet (optionally .csv.gz/.tsv.gz)")


def read_table(path: Path, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Interactions (``user``, ``item``, ``timestamp``, ``rating`` if named) from a table file."""
    wanted = DEFAULT_COLUMNS | dict(columns or {})
    unknown = sorted(set(wanted) - set(ROLES))
    if unknown:
        raise InputError(f"unknown column role '{unknown[0]}': the roles are {', '.join(ROLES)}")
    kind = table_kind(path)
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path, columns=list(dict.fromkeys(wanted.values())))
        else:
            frame = pd.read_csv(path, sep=DELIMITERS[kind], dtype=str, keep_default_na=False,
                                usecols=lambda name: name in wanted.values())
    except (ValueError, KeyError) as error:
        if "not in" in str(error) or "No match" in str(error) or "columns" in str(error).lower():
            raise InputError(_missing(path, wanted, kind)) from None
        raise InputError(f"cannot read {path}: {str(error).splitlines()[0]}") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {str(error).strip().splitlines()[0]}") from None
    missing = [name for name in wanted.values() if name not in frame.columns]
    if missing:
        raise InputError(_missing(path, wanted, kind))
    return _interactions(frame, wanted, path)


def _missing(path: Path, wanted: dict[str, str], kind: str) -> str:
    header = _header(path, kind)
    return (f"{Path(path).name} lacks column(s) {', '.join(n for n in wanted.values() if n not in header)} "
            f"(it has: {', '.join(header) or 'none'}): name yours with --user-col, --item-col, --time-col, --rating-col")


def _header(path: Path, kind: str) -> list[str]:
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq  # lazy: only for this message

            return list(pq.read_schema(path).names)
        return list(pd.read_csv(path, sep=DELIMITERS[kind], nrows=0).columns)
    except Exception:
        return []


def _interactions(frame: pd.DataFrame, wanted: dict[str, str], path: Path) -> pd.DataFrame:
    out = pd.DataFrame({
        "user": frame[wanted["user"]].astype(str).str.strip().to_numpy(dtype=object),
        "item": frame[wanted["item"]].astype(str).str.strip().to_numpy(dtype=object),
        "timestamp": _seconds(frame[wanted["timestamp"]], wanted["timestamp"], path),
    })
    for role in ("user", "item"):
        empty = (out[role] == "").to_numpy()
        if empty.any():
            raise InputError(f"{Path(path).name}: row {int(np.flatnonzero(empty)[0]) + 1} has an empty {wanted[role]}")
    if "rating" in wanted:
        rating = pd.to_numeric(frame[wanted["rating"]], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(rating).all():
            row = int(np.flatnonzero(~np.isfinite(rating))[0]) + 1
            raise InputError(f"{Path(path).name}: row {row}: {wanted['rating']} is not a number")
        out["rating"] = rating
    return out


def _seconds(values: pd.Series, name: str, path: Path) -> np.ndarray:
    """Numbers as they are (rounded to integers); otherwise dates, as seconds since the epoch."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return np.round(numbers.to_numpy(dtype=np.float64)).astype(np.int64)
    dates = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0]) + 1
        raise InputError(f"{Path(path).name}: row {row}: {name} '{values.iloc[row - 1]}' is neither a number nor a date")
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    return ((dates - epoch) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def table_entry(path: Path, name: str, columns: dict[str, str], recipe: Recipe, split: SplitConfig) -> DatasetEntry:
    """A data set entry for one local table (``seqbench prepare --from FILE --name NAME``): the
    same recipe, checks and ``meta.json`` as a registered data set, the file read where it is."""
    check_name("data set", name)
    if name in load_registry().names():
        raise InputError(f"'{name}' is a registered data set: give yours another --name")
    path = Path(path).resolve()
    table_kind(path)
    if not path.is_file():
        raise InputError(f"--from {path}: no such file; give the path of your interactions table (.csv, .tsv or .parquet)")
    source = SourceFile(role="interactions", format="table", url=str(path), sha256=None, mirror_folder="local", columns=columns)
    entry = DatasetEntry(name=name, description=f"interactions from {path.name}", citation="", license="",
                         files=(source,), recipe=recipe, split=split)
    check_entry(entry, f"--from {path.name}")
    return entry
