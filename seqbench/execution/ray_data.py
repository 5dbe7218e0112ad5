"""The prepared data set as Ray workers get it: staged once by the driver, loaded once per worker.

The driver puts each prepared data set's files into Ray's object store once and passes the
reference as a task argument, so Ray moves it to each node at most once, before the task starts; a
task reads the data dir directly when it sees the very same files there (a shared file system, or
a local Ray), and otherwise unpacks the copy into a node-local cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from seqbench.atomic import atomic_directory
from seqbench.data import prepare as preparing
from seqbench.data.sequences import is_prepared, load_prepared

if TYPE_CHECKING:
    from seqbench.data.sequences import PreparedDataset


@dataclass(frozen=True)
class DataSource:
    """Which prepared data set a task trains on; its files travel as a separate task argument."""

    name: str
    data_dir: str  # the driver's data dir, used when the worker sees the same files there
    digest: str  # sha256 over every file of the prepared directory (names and bytes)


def read_files(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def digest(files: dict[str, bytes]) -> str:
    total = hashlib.sha256()
    for name in sorted(files):
        total.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return total.hexdigest()


def ensure_prepared(name: str, data_dir: Path, mirror: Path | None) -> Path:
    if not is_prepared(name, data_dir):
        preparing.ensure_prepared(name, data_dir, mirror)  # once, on the driver (also the synthetic set)
    return Path(data_dir) / name


# Per worker process: a data set is parsed once however many runs of it the worker trains.
_LOADED: dict[str, PreparedDataset] = {}


def load_on_worker(source: DataSource, files: dict[str, bytes]) -> PreparedDataset:
    if source.digest in _LOADED:
        return _LOADED[source.digest]
    shared = Path(source.data_dir) / source.name
    if shared.is_dir() and digest(read_files(shared)) == source.digest:
        dataset = load_prepared(source.name, Path(source.data_dir))
    else:
        cache = Path(tempfile.gettempdir()) / "seqbench-ray-data" / source.digest[:16]
        if not (cache / source.name / "meta.json").is_file():
            # Another worker on this node may unpack the same files first: then theirs are used.
            with contextlib.suppress(FileExistsError), atomic_directory(cache / source.name) as tmp:
                for relative, content in files.items():
                    (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / relative).write_bytes(content)
        dataset = load_prepared(source.name, cache)
    _LOADED[source.digest] = dataset
    return dataset
