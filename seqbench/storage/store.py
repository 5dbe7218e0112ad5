"""The run store: one directory per run, Parquet tables plus the best checkpoint.

``<results>/runs/<run_id>/`` holds ``run.parquet`` (one row: flattened config, protocol columns,
status, final metrics, software versions), ``epochs.parquet`` (one row per evaluation),
``ranks.parquet`` (per-user ranks for valid and test), ``checkpoint.pt`` and ``run.log`` (the
run's progress lines as plain text). A run directory is
written under a temporary name and renamed when complete, so a crash never leaves a readable
partial run; readers only ever see whole runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from seqbench.atomic import atomic_directory, recover_siblings
from seqbench.errors import InputError
from seqbench.names import check_name
from seqbench.storage.layout import ResultsLayout

STATUSES = ("completed", "failed", "interrupted", "pruned")  # pruned: stopped by a tuner (StopRun)
LOG_FILE = "run.log"
# A temporary directory of an atomic write lives for the seconds the write takes; one older than
# this was left by a crashed process (a concurrent write is never that old).
STRAY_MIN_AGE_SECONDS = 3600
# What pyarrow raises for a file that is not (or no longer) Parquet: truncated, empty, garbage.
UNREADABLE = (OSError, ValueError, KeyError, IndexError, pa.ArrowException)


class DamagedRun(InputError):
    """A stored run file that cannot be read; the message names it and how to remove it."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


@dataclass
class StoredRun:
    """Everything a finished (or failed) run leaves behind."""

    run_id: str
    row: dict[str, Any]  # the run row: flat scalars only
    epochs: pd.DataFrame
    ranks: pd.DataFrame = field(default_factory=pd.DataFrame)  # columns: split, user, rank
    checkpoint: dict[str, torch.Tensor] | None = None
    log: str = ""  # the run's progress lines, written as run.log
    reused: bool = False  # read back from the store, not trained now

    @property
    def status(self) -> str:
        return str(self.row.get("status", ""))


_WARNED: set[Path] = set()  # damaged files already reported by this process
_RECOVERED: dict[Path, int] = {}  # runs directory -> its mtime when last recovered


def recover_once(runs_dir: Path) -> None:
    """Finish or undo a run replacement that a killed process left half done. A store is opened in
    many places and each scan lists the whole directory, so it is scanned again only when the
    directory changed since (a replacement renames entries in it, which moves its mtime)."""
    if not runs_dir.is_dir():
        return
    key, changed = runs_dir.resolve(), runs_dir.stat().st_mtime_ns
    if _RECOVERED.get(key) != changed:
        recover_siblings(runs_dir)
        _RECOVERED[key] = runs_dir.stat().st_mtime_ns


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs_dir = ResultsLayout(self.root).runs
        recover_once(self.runs_dir)

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / check_name("run id", run_id)

    def damaged(self, path: Path, error: BaseException) -> DamagedRun:
        """The one-line report of an unreadable run file (the rest of the store keeps working)."""
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return DamagedRun(f"damaged run file {path} ({reason[:160]}): remove the run with `rm -r {path.parent}` and train it again", path)

    def warn(self, problem: DamagedRun) -> None:
        if problem.path not in _WARNED:  # once per file and process, however often the store is read
            _WARNED.add(problem.path)
            sys.stderr.write(f"warning: skipped {problem.message}\n")
            sys.stderr.flush()

    def check_writable(self) -> None:
        """Fail in one line, before any training, when runs could not be written under ``root``
        (a file in the way, a read-only file system or folder): not after hours of training."""
        for path in (self.root, self.runs_dir):
            if path.exists() and not path.is_dir():
                raise InputError(f"--results {self.root}: {path} is not a directory: choose a directory for the run store")
        existing = next(path for path in (self.runs_dir, *self.runs_dir.parents) if path.exists())
        if not os.access(existing, os.W_OK | os.X_OK):  # EROFS counts even for root
            raise InputError(f"--results {self.root}: {existing} is not writable (read-only file system or no permission): "
                             "choose a writable folder for the run store")

    def check_readable(self) -> None:
        """Fail in one line when ``root`` is no store to read (a typo must not read as "no runs")."""
        if not self.root.exists():
            raise InputError(f"--results {self.root} does not exist: pass the folder that holds runs/ "
                             "(it is made by `seqbench train` or `compare`)")
        self.check_writable()

    def has(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "run.parquet").is_file()

    def is_completed(self, run_id: str) -> bool:
        try:
            return self.has(run_id) and self.row(run_id).get("status") == "completed"
        except DamagedRun:
            return False

    def stored(self, run_id: str) -> StoredRun:
        """A stored run read back (row and epochs; no checkpoint), marked as reused."""
        return StoredRun(run_id, self.row(run_id), self.epochs(run_id), log=self.log(run_id), reused=True)

    def log(self, run_id: str) -> str:
        path = self.run_dir(run_id) / LOG_FILE
        return path.read_text(errors="replace") if path.is_file() and not path.is_symlink() else ""

    def write(self, run: StoredRun, replace_completed: bool = False) -> bool:
        """Write a whole run atomically, replacing an earlier failed or interrupted one. A completed
        run is replaced only by another completed run and only with ``replace_completed``
        (``--force``): a stopped or failed re-run never destroys finished work. False when the
        stored run was kept."""
        target = self.run_dir(run.run_id)
        if self.is_completed(run.run_id) and not (replace_completed and run.status == "completed"):
            return False
        try:
            with atomic_directory(target, overwrite=True) as tmp:
                pq.write_table(pa.Table.from_pylist([run.row]), tmp / "run.parquet")
                pq.write_table(pa.Table.from_pandas(run.epochs, preserve_index=False), tmp / "epochs.parquet")
                pq.write_table(pa.Table.from_pandas(run.ranks, preserve_index=False), tmp / "ranks.parquet")
                if run.checkpoint is not None:
                    torch.save(run.checkpoint, tmp / "checkpoint.pt")
                if run.log:
                    (tmp / LOG_FILE).write_text(run.log)
        except (PermissionError, NotADirectoryError, FileExistsError) as error:
            raise InputError(f"cannot write runs into {self.root} ({error.strerror or error}): choose a writable --results directory") from None
        return True

    def run_files(self) -> list[Path]:
        if not self.runs_dir.is_dir():
            return []
        # A symlinked folder is never a run of this store (it may point anywhere): gc removes the link.
        return sorted(path for path in self.runs_dir.glob("*/run.parquet")
                      if not path.parent.name.startswith(".") and not path.parent.is_symlink())

    def table(self) -> pd.DataFrame:
        """All readable stored runs as one table; a damaged run file is skipped with a warning."""
        tables = []
        for link in sorted(self.runs_dir.iterdir()) if self.runs_dir.is_dir() else []:
            if link.is_symlink():
                self.warn(DamagedRun(f"{link}: a symlink inside the store is never followed: remove it (`seqbench runs gc` does)", link))
        for path in self.run_files():
            try:
                tables.append(self._read_row_table(path))
            except DamagedRun as problem:
                self.warn(problem)
        if not tables:
            return pd.DataFrame()
        try:
            return pa.concat_tables(tables, promote_options="permissive").to_pandas()
        except pa.ArrowException:
            # Two runs disagree on a column's type (a file edited by hand, another version's
            # column): rows as plain values still make one table; nothing is dropped.
            return pd.DataFrame([table.to_pylist()[0] for table in tables])

    def _read_row_table(self, path: Path) -> pa.Table:
        try:
            table = pq.read_table(path, partitioning=None)
        except UNREADABLE as error:
            raise self.damaged(path, error) from None
        if table.num_rows != 1 or "run_id" not in table.column_names:
            raise self.damaged(path, ValueError(f"{table.num_rows} rows, expected one run row"))
        for column in ("run_id", "status"):  # what every reader keys on must be text
            if column in table.column_names and not pa.types.is_string(table.schema.field(column).type):
                raise self.damaged(path, ValueError(f"column {column} is {table.schema.field(column).type}, not text"))
        stored_id = table.column("run_id")[0].as_py()
        if stored_id != path.parent.name:  # a copied folder (X.bak) is not a second run of X
            raise self.damaged(path, ValueError(f"its folder is not named after its run id {stored_id}"))
        return table

    def row(self, run_id: str) -> dict[str, Any]:
        if not self.has(run_id):
            raise InputError(f"no stored run '{run_id}' in {self.root}: list runs with `seqbench runs`")
        return self._read_row_table(self.run_dir(run_id) / "run.parquet").to_pylist()[0]

    def _frame(self, run_id: str, name: str) -> pd.DataFrame:
        """A run's per-epoch or per-user table; a damaged one reads as empty, with a warning."""
        path = self.run_dir(run_id) / name
        try:
            return pq.read_table(path, partitioning=None).to_pandas()
        except FileNotFoundError:
            raise
        except UNREADABLE as error:
            self.warn(self.damaged(path, error))
            return pd.DataFrame()

    def epochs(self, run_id: str) -> pd.DataFrame:
        return self._frame(run_id, "epochs.parquet")

    def ranks(self, run_id: str, split: str | None = None) -> pd.DataFrame:
        frame = self._frame(run_id, "ranks.parquet")
        if split is None or frame.empty or "split" not in frame.columns:
            return frame
        return frame[frame["split"] == split].reset_index(drop=True)

    def checkpoint(self, run_id: str) -> dict[str, torch.Tensor]:
        path = self.run_dir(run_id) / "checkpoint.pt"
        if not path.is_file():
            raise InputError(f"run '{run_id}' has no checkpoint (status {self.row(run_id).get('status')}): re-run it")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for a file that is not a checkpoint
            raise InputError(f"{path} is not a readable checkpoint ({type(error).__name__}): re-run the training") from None
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise InputError(
                f"{path} holds a {type(state).__name__}, not a model state dict: remove the run with `rm -r {path.parent}` and re-run the training"
            )
        return state

    def config(self, run_id: str) -> dict[str, Any]:
        path = self.run_dir(run_id) / "run.parquet"
        try:
            config = json.loads(self.row(run_id)["config_json"])
        except (KeyError, TypeError, ValueError) as error:
            raise self.damaged(path, ValueError(f"config_json unreadable: {error}")) from None
        if not isinstance(config, dict):
            raise self.damaged(path, ValueError("config_json is not a mapping"))
        return config

    def run_ids(self) -> list[str]:
        return [path.parent.name for path in self.run_files()]

    def resolve(self, prefix: str) -> str:
        """The stored run whose id is ``prefix`` or starts with it; InputError when none or several."""
        if self.has(prefix):
            return prefix
        matches = [run_id for run_id in self.run_ids() if run_id.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise InputError(f"no stored run '{prefix}' in {self.root}: list runs with `seqbench runs`")
        shown = ", ".join(matches[:8]) + (f" and {len(matches) - 8} more" if len(matches) > 8 else "")
        raise InputError(f"run id prefix '{prefix}' matches {len(matches)} runs ({shown}): give more of the id")

    def delete(self, run_id: str) -> None:
        """Remove a run directory; it is renamed away first, so readers never see half of it."""
        target = self.run_dir(run_id)
        trash = target.with_name(f".{target.name}.deleted-{os.getpid()}")
        os.rename(target, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def stray_dirs(self, min_age: float = STRAY_MIN_AGE_SECONDS) -> list[Path]:
        """Directories under ``runs/`` that are no readable run: leftovers of a crashed write
        (hidden temporary names, untouched for ``min_age`` seconds) and folders without run.parquet."""
        if not self.runs_dir.is_dir():
            return []
        now = time.time()
        stray = []
        for path in sorted(self.runs_dir.iterdir()):
            if path.is_symlink():  # planted or copied in: never followed, the link itself goes
                stray.append(path)
            elif not path.is_dir():
                continue
            elif path.name.startswith("."):
                if now - path.stat().st_mtime >= min_age:
                    stray.append(path)
            elif not (path / "run.parquet").is_file() or not self._named_after_its_run(path):
                stray.append(path)
        return stray

    def _named_after_its_run(self, folder: Path) -> bool:
        try:
            self._read_row_table(folder / "run.parquet")
        except DamagedRun as problem:
            return "not named after its run id" not in problem.message
        return True


def ranks_frame(ranks_by_split: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Per-user ranks as a long table: split, user, rank."""
    parts = [
        pd.DataFrame({"split": name, "user": users.astype(np.int64), "rank": ranks.astype(np.int64)})
        for name, (users, ranks) in ranks_by_split.items()
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["split", "user", "rank"])


def filter_runs(table: pd.DataFrame, **equals: Iterable[str] | str | None) -> pd.DataFrame:
    """Rows whose column equals (or is in) each given value; ``None`` means no filter."""
    for column, wanted in equals.items():
        if wanted is None or table.empty:
            continue
        values = [wanted] if isinstance(wanted, str) else list(wanted)
        table = table[table[column].isin(values)]
    return table.reset_index(drop=True)


def stale_reason(row: Mapping[str, Any], fingerprint: str) -> str | None:
    """Why a stored run does not belong to the data set as prepared now, or None.

    Runs stored before fingerprints were recorded have none and are taken as they are.
    """
    stored = row.get("data_fingerprint")
    if not isinstance(stored, str) or not stored or stored == fingerprint:
        return None
    return (f"run {row.get('run_id')} was trained on another version of data set '{row.get('dataset')}' "
            f"(data fingerprint {stored}, now {fingerprint}: it was prepared again since)")
