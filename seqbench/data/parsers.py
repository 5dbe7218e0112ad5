"""One parser per raw format. Each returns a DataFrame in file order:

- interaction parsers: ``user``, ``item`` and, where the format has them, ``timestamp`` (int64,
  seconds or the source's unit) and ``rating`` (float64);
- attribute parsers: ``item``, ``attribute`` (one row per pair; ids typed like the interactions').

Malformed input is an :class:`InputError` that names the file and the 1-based line number. Nothing
is ever evaluated as code: JSON goes through ``json``, Python-literal metadata through
``ast.literal_eval``.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from seqbench.data.tables import read_table
from seqbench.errors import InputError
from seqbench.registry import Registry

Parser = Callable[[Path], pd.DataFrame]
_FIELD_ERROR = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _open_text(path: Path, encoding: str = "utf-8") -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) of every non-blank line."""
    with _open_text(path, encoding) as handle:
        for number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if text.strip():
                yield number, text


def _malformed(path: Path, line: int, what: str) -> InputError:
    return InputError(f"malformed row in {path}:{line}: {what}; fix or re-fetch the file (prepare --force)")


# --- delimited text -------------------------------------------------------------------------


def _read_delimited(
    path: Path, sep: str, names: list[str], header: bool, text: str | None = None, expected_header: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """All fields as strings, one row per line (blank lines kept for numbering, then dropped).

    Every line must have exactly ``len(names)`` fields: pandas would otherwise take an extra
    leading column as the index and silently shift the others. A header line must name the
    ``expected_header`` columns (case-insensitive).
    """
    source: Any = io.StringIO(text) if text is not None else path
    try:
        frame = pd.read_csv(
            source, sep=sep, header=None, dtype=str, index_col=False,
            keep_default_na=False, na_values=[], skip_blank_lines=False, engine="c",
            quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE,
        )
    except pd.errors.ParserError as error:
        found = _FIELD_ERROR.search(str(error))
        if found:
            raise _malformed(path, int(found.group(2)), f"expected {found.group(1)} fields, saw {found.group(3)}") from None
        raise InputError(f"cannot parse {path}: {str(error).strip().splitlines()[-1]}") from None
    except pd.errors.EmptyDataError:
        return pd.DataFrame({name: pd.Series([], dtype=str) for name in names})
    frame.index = np.arange(len(frame)) + 1  # the index is now the line number
    frame = frame[~(frame == "").all(axis=1).to_numpy()]
    if frame.shape[1] != len(names) and len(frame):
        raise _malformed(path, int(frame.index[0]), f"expected {len(names)} fields, saw {frame.shape[1]}")
    frame.columns = names
    if header and len(frame):
        first = tuple(str(value).strip().lower() for value in frame.iloc[0])
        if expected_header is not None and first != expected_header:
            raise _malformed(path, int(frame.index[0]), f"header is {sep.join(frame.iloc[0])!r}, expected {sep.join(expected_header)!r}")
        frame = frame.iloc[1:]
    return frame


def _first_bad(frame: pd.DataFrame, bad: np.ndarray) -> int:
    return int(frame.index[np.flatnonzero(bad)[0]])


def _integers(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    try:  # fast path for clean files; the slow path below finds the offending line
        return frame[column].to_numpy(dtype=str).astype(np.int64)
    except ValueError:
        pass
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        line = _first_bad(frame, bad)
        raise _malformed(path, line, f"{column} '{frame[column].loc[line]}' is not an integer")
    return values.astype(np.int64)


def _floats(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        line = _first_bad(frame, bad)
        raise _malformed(path, line, f"{column} '{frame[column].loc[line]}' is not a number")
    return values


def _strings(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = frame[column].str.strip()
    bad = (values == "").to_numpy()
    if bad.any():
        raise _malformed(path, _first_bad(frame, bad), f"{column} is empty")
    return values.to_numpy(dtype=object)


def _datetimes(frame: pd.DataFrame, column: str, path: Path, fmt: str) -> np.ndarray:
    """Seconds since the epoch (UTC) of date strings; unparseable dates name their line."""
    parsed = pd.to_datetime(frame[column].str.strip(), format=fmt, errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        line = _first_bad(frame, bad)
        raise _malformed(path, line, f"{column} '{frame[column].loc[line]}' is not a date")
    # Whole seconds since the epoch, whatever resolution pandas chose for the parsed dates.
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    return ((parsed - epoch) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def _interactions(user: np.ndarray, item: np.ndarray, timestamp: np.ndarray | None = None, rating: np.ndarray | None = None) -> pd.DataFrame:
    columns: dict[str, Any] = {"user": user, "item": item}
    if timestamp is not None:
        columns["timestamp"] = timestamp
    if rating is not None:
        columns["rating"] = rating
    return pd.DataFrame(columns).reset_index(drop=True)


def parse_movielens_csv(path: Path) -> pd.DataFrame:
    """MovieLens ``ratings.csv``: ``userId,movieId,rating,timestamp`` with a header."""
    frame = _read_delimited(
        path, ",", ["user", "item", "rating", "timestamp"], header=True, expected_header=("userid", "movieid", "rating", "timestamp")
    )
    return _interactions(_integers(frame, "user", path), _integers(frame, "item", path),
                         _integers(frame, "timestamp", path), _floats(frame, "rating", path))


def _double_colon_text(path: Path) -> str:
    # pandas needs its slow Python engine for a two-character separator; a one-character
    # stand-in that never occurs in the files keeps the fast C parser.
    return path.read_bytes().decode("latin-1").replace("::", "\x1f")


def parse_movielens_dat(path: Path) -> pd.DataFrame:
    """MovieLens-1M ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``, no header."""
    frame = _read_delimited(path, "\x1f", ["user", "item", "rating", "timestamp"], False, _double_colon_text(path))
    return _interactions(_integers(frame, "user", path), _integers(frame, "item", path),
                         _integers(frame, "timestamp", path), _floats(frame, "rating", path))


def parse_amazon_ratings_csv(path: Path) -> pd.DataFrame:
    """Amazon 2014 ratings-only CSV: ``user,item,rating,timestamp``, no header."""
    frame = _read_delimited(path, ",", ["user", "item", "rating", "timestamp"], header=False)
    return _interactions(_strings(frame, "user", path), _strings(frame, "item", path),
                         _integers(frame, "timestamp", path), _floats(frame, "rating", path))


def parse_hetrec_lastfm_tags(path: Path) -> pd.DataFrame:
    """HetRec 2011 ``user_taggedartists-timestamps.dat``: ``userID artistID tagID timestamp`` (tabs, header)."""
    frame = _read_delimited(path, "\t", ["user", "item", "tag", "timestamp"], header=True)
    return _interactions(_integers(frame, "user", path), _integers(frame, "item", path), _integers(frame, "timestamp", path))


def parse_gowalla_checkins(path: Path) -> pd.DataFrame:
    """SNAP Gowalla ``loc-gowalla_totalCheckins.txt(.gz)``: ``user time lat lon location`` (tabs)."""
    frame = _read_delimited(path, "\t", ["user", "time", "latitude", "longitude", "item"], header=False)
    return _interactions(_integers(frame, "user", path), _integers(frame, "item", path),
                         _datetimes(frame, "time", path, "%Y-%m-%dT%H:%M:%SZ"))


def parse_yelp_review_json(path: Path) -> pd.DataFrame:
    """Yelp ``yelp_academic_dataset_review.json``: one JSON object per line (user_id, business_id, date, stars)."""
    users: list[str] = []
    items: list[str] = []
    dates: list[str] = []
    stars: list[float] = []
    numbers: list[int] = []
    for number, line in _lines(path):
        try:
            record = json.loads(line)
            users.append(str(record["user_id"]))
            items.append(str(record["business_id"]))
            dates.append(str(record["date"]))
            stars.append(float(record.get("stars", np.nan)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise _malformed(path, number, f"not a review record ({type(error).__name__}: {error})") from None
        numbers.append(number)
    frame = pd.DataFrame({"date": dates}, index=np.asarray(numbers, dtype=np.int64))
    return _interactions(np.asarray(users, dtype=object), np.asarray(items, dtype=object),
                         _datetimes(frame, "date", path, "ISO8601"), np.asarray(stars, dtype=np.float64))


def parse_s3rec_sequences(path: Path) -> pd.DataFrame:
    """S3-Rec format: ``user item item ...`` per line, items in chronological order."""
    users: list[int] = []
    rows: list[list[int]] = []
    seen: set[int] = set()
    for number, line in _lines(path):
        try:
            ids = [int(token) for token in line.split()]
        except ValueError:
            raise _malformed(path, number, "expected integer ids 'user item item ...'") from None
        if len(ids) < 2:
            raise _malformed(path, number, "a user with no items")
        if ids[0] in seen:
            raise _malformed(path, number, f"user {ids[0]} appears on more than one line")
        seen.add(ids[0])
        users.append(ids[0])
        rows.append(ids[1:])
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    items = np.fromiter((item for row in rows for item in row), dtype=np.int64, count=int(lengths.sum()))
    return _interactions(np.repeat(np.asarray(users, dtype=np.int64), lengths), items)


# --- attributes -----------------------------------------------------------------------------


def _pairs(items: list[Any], attributes: list[list[Any]], item_dtype: Any) -> pd.DataFrame:
    counts = np.fromiter((len(a) for a in attributes), dtype=np.int64, count=len(attributes))
    flat = [value for group in attributes for value in group]
    attr_dtype = np.int64 if flat and all(isinstance(v, (int, np.integer)) for v in flat) else object
    return pd.DataFrame({
        "item": np.repeat(np.asarray(items, dtype=item_dtype), counts),
        "attribute": np.asarray(flat, dtype=attr_dtype),
    })


def parse_s3rec_item2attributes(path: Path) -> pd.DataFrame:
    """S3-Rec ``<Name>_item2attributes.json``: ``{"item": [attribute, ...], ...}``."""
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise _malformed(path, error.lineno, f"invalid JSON ({error.msg})") from None
    if not isinstance(document, dict):
        raise _malformed(path, 1, "expected a JSON object mapping item ids to attribute lists")
    items: list[int] = []
    groups: list[list[int]] = []
    for key, value in document.items():
        if not str(key).isdigit() or not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise _malformed(path, 1, f"item '{key}' must map an integer id to a list of integer attribute ids")
        items.append(int(key))
        groups.append(value)
    return _pairs(items, groups, np.int64)


def parse_movielens_movies_csv(path: Path) -> pd.DataFrame:
    """MovieLens ``movies.csv``: ``movieId,title,genres`` (genres separated by '|')."""
    frame = _read_delimited(path, ",", ["item", "title", "genres"], header=True, expected_header=("movieid", "title", "genres"))
    return _genres(_integers(frame, "item", path), frame["genres"])


def parse_movielens_movies_dat(path: Path) -> pd.DataFrame:
    """MovieLens-1M ``movies.dat``: ``MovieID::Title::Genres`` (latin-1)."""
    frame = _read_delimited(path, "\x1f", ["item", "title", "genres"], False, _double_colon_text(path))
    return _genres(_integers(frame, "item", path), frame["genres"])


def _genres(items: np.ndarray, genres: pd.Series) -> pd.DataFrame:
    split = genres.str.strip().str.split("|")
    pairs = pd.DataFrame({"item": items, "attribute": split.to_numpy()}).explode("attribute")
    keep = pairs["attribute"].notna() & (pairs["attribute"] != "") & (pairs["attribute"] != "(no genres listed)")
    return pairs[keep.to_numpy()].reset_index(drop=True)


def parse_hetrec_lastfm_artist_tags(path: Path) -> pd.DataFrame:
    """Artist -> tag pairs from the HetRec tag-assignment file (the tags users gave each artist)."""
    frame = _read_delimited(path, "\t", ["user", "item", "tag", "timestamp"], header=True)
    pairs = pd.DataFrame({"item": _integers(frame, "item", path), "attribute": _integers(frame, "tag", path)})
    return pairs.drop_duplicates().reset_index(drop=True)


def parse_amazon_meta(path: Path) -> pd.DataFrame:
    """Amazon 2014 ``meta_<Category>.json.gz``: one Python-literal dict per line; attributes are
    the categories and the brand (as S3-Rec used them). ``ast.literal_eval`` never runs code."""
    items: list[str] = []
    groups: list[list[str]] = []
    for number, line in _lines(path):
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
            raise _malformed(path, number, f"not a Python literal ({type(error).__name__})") from None
        if not isinstance(record, dict) or "asin" not in record:
            raise _malformed(path, number, "expected a dict with an 'asin'")
        paths = record.get("categories") or []
        if not isinstance(paths, list) or not all(isinstance(path_, list) for path_ in paths):
            raise _malformed(path, number, "'categories' must be a list of category paths (lists of names)")
        values = [str(c) for path_ in paths for c in path_]
        if record.get("brand"):
            values.append(f"brand:{record['brand']}")
        items.append(str(record["asin"]))
        groups.append(list(dict.fromkeys(values)))  # unique, first-seen order
    return _pairs(items, groups, object)


INTERACTION_PARSERS: Registry[Parser] = Registry("interactions format", {
    "s3rec-sequences": parse_s3rec_sequences,
    "movielens-csv": parse_movielens_csv,
    "movielens-dat": parse_movielens_dat,
    "amazon-ratings-csv": parse_amazon_ratings_csv,
    "hetrec-lastfm-tags": parse_hetrec_lastfm_tags,
    "yelp-review-json": parse_yelp_review_json,
    "gowalla-checkins": parse_gowalla_checkins,
    "table": read_table,  # your own CSV/TSV/Parquet; a source's ``columns`` names its columns
})
ATTRIBUTE_PARSERS: dict[str, Parser] = {
    "s3rec-item2attributes": parse_s3rec_item2attributes,
    "movielens-movies-csv": parse_movielens_movies_csv,
    "movielens-movies-dat": parse_movielens_movies_dat,
    "hetrec-lastfm-artist-tags": parse_hetrec_lastfm_artist_tags,
    "amazon-meta": parse_amazon_meta,
}


def parse(format_name: str, path: Path, role: str = "interactions", columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Parse ``path`` with the named format; unreadable compressed or non-text files are input errors."""
    if format_name == "table" and role == "interactions":
        return read_table(Path(path), columns)
    parsers: Mapping[str, Parser] = INTERACTION_PARSERS if role == "interactions" else ATTRIBUTE_PARSERS
    if format_name not in parsers:
        raise InputError(f"unknown {role} format '{format_name}': choose one of {', '.join(parsers)}")
    try:
        return parsers[format_name](Path(path))
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise InputError(f"corrupt or truncated compressed file {path} ({error}): delete it and run again") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not text in the expected encoding ({error.reason}): re-fetch the file") from None
