"""``prepare``: registry entry -> verified raw files -> parsed, filtered, split -> ``data/<name>/``.

The output directory is written through :func:`seqbench.atomic.atomic_directory`, so a failure at
any step leaves no partial ``data/<name>/``. Preparing an already prepared data set is a no-op
unless ``force`` is set (or, for ``synthetic``, different size parameters are asked for).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

import seqbench
from seqbench.atomic import atomic_directory
from seqbench.coerce import coerce_fields
from seqbench.data import parsers, splits, synthetic
from seqbench.data.download import RAW_DIR, FetchedFile, fetch
from seqbench.data.filtering import (
    FilterReport,
    Sequences,
    build_sequences,
    filter_interactions,
    remap_attributes,
)
from seqbench.data.registry import (
    DatasetEntry,
    Registry,
    SyntheticParams,
    load_registry,
)
from seqbench.data.sequences import (
    PreparedDataset,
    Ragged,
    damaged,
    dataset_dir,
    is_prepared,
    load_prepared,
    read_meta,
    save_prepared,
)
from seqbench.errors import InputError, RuntimeFailure

DEFAULT_DATASET = "synthetic"
_console = Console(stderr=True, soft_wrap=True)  # a log line is never wrapped at 80 columns


def _say(show: bool, message: str) -> None:
    if show:
        _console.print(message, highlight=False, markup=False)


def check_writable(data_dir: Path) -> None:
    """Fail early, in one line, when prepared data could not be written."""
    try:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(f"data dir {data_dir} is not writable ({reason}): choose another --data-dir or fix its permissions") from None


def synthetic_params(entry: DatasetEntry, overrides: dict[str, str] | None) -> SyntheticParams | None:
    """The entry's generator parameters with ``key=value`` overrides (only ``synthetic`` takes any)."""
    if entry.synthetic is None:
        if overrides:
            raise InputError(f"data set '{entry.name}' takes no --set parameters: only generated data sets (synthetic) do")
        return None
    fields = {f.name for f in dataclasses.fields(SyntheticParams)}
    for key in overrides or {}:
        if key not in fields:
            raise InputError(f"unknown synthetic parameter '{key}': choose from {', '.join(sorted(fields))}")
    values = coerce_fields(SyntheticParams, dict(overrides or {}), "synthetic parameter ")  # ranges: synthetic.generate
    return dataclasses.replace(entry.synthetic, **values)


# --- loading raw data -------------------------------------------------------------------------


def _load_sources(
    entry: DatasetEntry, data_dir: Path, mirror: Path | None, show: bool, refresh: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[FetchedFile]]:
    fetched = [fetch(source, Path(data_dir) / RAW_DIR, mirror, show, entry.manual_download, refresh) for source in entry.files]
    frames: dict[str, list[pd.DataFrame]] = {"interactions": [], "attributes": []}
    for item in fetched:
        _say(show, f"  parsing {item.path.name} ({item.source.format})")
        try:
            frames[item.source.role].append(parsers.parse(item.source.format, item.path, item.source.role, item.source.columns))
        except InputError:
            # Kept, an unparseable raw file would be read again after the source is fixed.
            item.path.unlink(missing_ok=True)
            raise
    interactions = pd.concat(frames["interactions"], ignore_index=True)
    attributes = pd.concat(frames["attributes"], ignore_index=True) if frames["attributes"] else None
    return interactions, attributes, fetched


def _source_meta(fetched: list[FetchedFile]) -> list[dict[str, Any]]:
    return [
        {"role": f.source.role, "format": f.source.format, "url": f.source.url, "member": f.source.member,
         "file": f.source.file_name, "sha256": f.sha256, "verified": f.verified if f.verified else "unverified",
         "origin": f.origin, **({"columns": f.source.columns} if f.source.columns else {})}
        for f in fetched
    ]


# --- statistics and metadata ----------------------------------------------------------------


def statistics(sequences: Sequences) -> dict[str, Any]:
    """Table-1 statistics of the full (filtered) sequences, before the split."""
    users, items = len(sequences.items), sequences.num_items
    interactions = len(sequences.items.values)
    lengths = sequences.items.lengths
    return {
        "users": users,
        "items": items,
        "interactions": interactions,
        "avg_len": round(interactions / users, 4),
        "density": round(interactions / (users * items), 6),
        "median_len": float(np.median(lengths)),
        "max_len": int(lengths.max()),
    }


def _split(entry: DatasetEntry, sequences: Sequences) -> splits.SplitResult:
    users = np.arange(1, len(sequences.items) + 1, dtype=np.int64)  # remapped user ids 1..U
    if entry.split.kind == "temporal":
        if sequences.timestamps is None:
            raise InputError(f"data set '{entry.name}' has no timestamps, so the temporal split cannot apply: use leave-one-out")
        return splits.temporal(users, sequences.items, sequences.timestamps, entry.split.quantile)
    return splits.leave_one_out(users, sequences.items)


def _build(
    entry: DatasetEntry, data_dir: Path, mirror: Path | None, params: SyntheticParams | None, show: bool, refresh: bool = False
) -> tuple[PreparedDataset, Sequences]:
    catalog = None
    if params is not None:
        _say(show, f"  generating {params}")
        interactions, attribute_pairs = synthetic.generate(params)
        catalog = synthetic.full_catalog(params)
        fetched: list[FetchedFile] = []
    else:
        interactions, attribute_pairs, fetched = _load_sources(entry, data_dir, mirror, show, refresh)
    frame, report = filter_interactions(interactions, entry.recipe, entry.name)
    sequences = build_sequences(frame, catalog)
    split = _split(entry, sequences)
    attributes: Ragged | None = None
    num_attributes = 0
    if attribute_pairs is not None:
        attributes, originals = remap_attributes(attribute_pairs, sequences.item_ids)
        num_attributes = len(originals)
    stats = statistics(sequences)
    meta = _meta(entry, stats, report, split, fetched, params, sequences, num_attributes)
    dataset = PreparedDataset(entry.name, sequences.num_items, split.train_users, split.train, split.valid,
                              split.test, attributes, num_attributes, meta)
    return dataset, sequences


def _meta(entry: DatasetEntry, stats: dict[str, Any], report: FilterReport, split: splits.SplitResult,
          fetched: list[FetchedFile], params: SyntheticParams | None, sequences: Sequences, num_attributes: int) -> dict[str, Any]:
    entry_dict = entry.to_dict()
    timestamps = sequences.timestamps
    return {
        "description": entry.description,
        "citation": entry.citation,
        "license": entry.license,
        "recipe": entry_dict["recipe"],
        "split": {**entry_dict["split"], **split.info, "method": entry.split.kind},
        "sources": _source_meta(fetched),
        "synthetic": _synthetic_meta(params, sequences),
        "statistics": stats,
        "filtering": report.to_dict(),
        "num_users": stats["users"],
        "users_dropped": split.users_dropped,
        "split_users": {"train": len(split.train_users), "valid": len(split.valid), "test": len(split.test)},
        "time_range": [int(timestamps.values.min()), int(timestamps.values.max())] if timestamps is not None else None,
        "num_attributes": num_attributes,
        "seqbench_version": seqbench.__version__,
        "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _synthetic_meta(params: SyntheticParams | None, sequences: Sequences) -> dict[str, Any] | None:
    if params is None:
        return None
    described = dataclasses.asdict(params)
    if params.catalog == "full":  # what the catalogue holds that nobody picked: the long tail's size
        picked = np.bincount(sequences.items.values, minlength=sequences.num_items + 1)[1:] > 0
        described["never_interacted_share"] = round(1.0 - float(picked.mean()), 6)
    return described


def _same_synthetic(stored: Any, wanted: SyntheticParams) -> bool:
    """Whether a prepared set's ``synthetic`` meta was made with ``wanted`` (a field added since
    takes its default; derived figures such as the never-interacted share are not parameters)."""
    if not isinstance(stored, dict):
        return False
    names = {f.name for f in dataclasses.fields(SyntheticParams)}
    try:
        return SyntheticParams(**{k: v for k, v in stored.items() if k in names}) == wanted
    except TypeError:
        return False


def _write(dataset: PreparedDataset, sequences: Sequences, target: Path, overwrite: bool) -> None:
    try:
        with atomic_directory(target, overwrite=overwrite) as tmp:
            save_prepared(dataset, tmp)
            # Original ids, so results can be traced back to the source's items.
            originals = pa.array([str(v) for v in sequences.item_ids])
            pq.write_table(pa.table({"item": pa.array(np.arange(1, sequences.num_items + 1, dtype=np.int32)),
                                     "original_id": originals}), tmp / "items.parquet")
    except FileExistsError:
        if is_prepared(target.name, target.parent):
            return  # another process prepared it meanwhile (e.g. two runs ensuring synthetic at once)
        raise InputError(f"{target} exists but is not a prepared data set: remove it, or run with --force") from None
    except OSError as error:
        raise RuntimeFailure(f"writing {target} failed ({error.strerror or error}): free disk space or fix permissions, then run again") from None


# --- public API --------------------------------------------------------------------------------


def _row(name: str, stats: dict[str, Any], path: Path, status: str, **extra: Any) -> dict[str, Any]:
    keys = ("users", "items", "interactions", "avg_len", "density")
    return {"name": name, **{k: stats[k] for k in keys}, "path": str(path), "status": status, **extra}


def prepare(
    name: str,
    data_dir: Path,
    mirror: Path | None = None,
    force: bool = False,
    progress: bool = False,
    params: dict[str, str] | None = None,
    registry: Registry | None = None,
) -> dict[str, Any]:
    """Prepare one registered data set into ``data_dir/name``; return its Table-1 statistics.

    ``status`` in the result is ``prepared`` or ``already prepared`` (a no-op).
    """
    entry = (registry or load_registry()).get(name)
    wanted = synthetic_params(entry, params)
    data_dir = Path(data_dir)
    target = dataset_dir(name, data_dir)
    if is_prepared(name, data_dir) and not force:
        meta = _usable_meta(name, data_dir)
        if meta is not None and (wanted is None or _same_synthetic(meta.get("synthetic"), wanted)):
            _say(progress, f"{name}: already prepared in {target} (use --force to rebuild)")
            return _row(name, meta["statistics"], target, "already prepared", users_dropped=meta.get("users_dropped", 0))
    if mirror is not None and entry.files and not Path(mirror).is_dir():
        raise InputError(f"mirror directory {mirror} does not exist: pass the folder that holds s3rec/, raw/, ... (--mirror, SEQBENCH_MIRROR)")
    check_writable(data_dir)
    start = time.perf_counter()
    _say(progress, f"{name}: preparing ({entry.description})")
    dataset, sequences = _build(entry, data_dir, Path(mirror) if mirror else None, wanted, progress, refresh=force)
    _write(dataset, sequences, target, overwrite=force or is_prepared(name, data_dir))
    seconds = round(time.perf_counter() - start, 3)
    _say(progress, f"{name}: written to {target} in {seconds:.1f} s")
    return _row(name, dataset.meta["statistics"], target, "prepared", seconds=seconds,
                users_dropped=dataset.meta["users_dropped"])


def _usable_meta(name: str, data_dir: Path) -> dict[str, Any] | None:
    """meta.json of a prepared data set, or None (with a warning) when it is damaged: rebuilt."""
    try:
        meta = read_meta(name, data_dir)
        if not isinstance(meta.get("statistics"), dict):
            raise damaged(dataset_dir(name, data_dir), "meta.json has no statistics")
        return meta
    except InputError as error:
        _console.print(f"warning: {error.message}; rebuilding it", highlight=False, markup=False, soft_wrap=True)
        return None


def list_datasets(data_dir: Path, registry: Registry | None = None) -> list[dict[str, Any]]:
    """Every registered data set, whether it is prepared in ``data_dir``, and where it comes from."""
    rows = []
    for entry in (registry or load_registry()).entries.values():
        prepared = is_prepared(entry.name, data_dir)
        rows.append({
            "name": entry.name,
            "prepared": prepared,
            "path": str(Path(data_dir) / entry.name) if prepared else None,
            "split": entry.split.kind,
            "source": "generated" if entry.synthetic is not None else ("manual" if entry.manual_download else "download"),
            "description": entry.description,
        })
    return rows


def ensure_prepared(name: str, data_dir: Path, mirror: Path | None = None) -> None:
    """Make sure ``name`` is prepared: ``synthetic`` (no download) is generated on the fly; any
    other missing data set is an input error that says which ``prepare`` command to run."""
    if is_prepared(name, data_dir):
        return
    if Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise InputError(f"--data-dir {data_dir} is not a directory: give the folder that holds prepared data sets")
    entry = load_registry().get(name)
    if entry.synthetic is None:
        raise InputError(
            f"data set '{name}' is not prepared in {data_dir}: run `seqbench prepare {name}` "
            f"(with --data-dir {data_dir} if it is not the default)"
        )
    prepare(name, data_dir, mirror)


def load_dataset(name: str, data_dir: Path, mirror: Path | None = None) -> PreparedDataset:
    """The prepared data set ``name``, prepared first when it is missing."""
    ensure_prepared(name, data_dir, mirror)
    return load_prepared(name, data_dir)
