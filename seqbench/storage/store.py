"""The run store: one directory per run, Parquet tables plus the best checkpoint.

``<results>/runs/<run_id>/`` holds ``run.parquet`` (one row: flattened config, protocol columns,
status, final metrics, software versions), ``epochs.parquet`` (one row per evaluation),
``ranks.parquet`` (per-user ranks for valid and test) and ``checkpoint.pt``. A run directory is
written under a temporary name and renamed when complete, so a crash never leaves a readable
partial run; readers only ever see whole runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import torch

from seqbench.atomic import atomic_directory
from seqbench.errors import InputError

RUNS_DIR = "runs"
STATUSES = ("completed", "failed", "interrupted", "pruned")  # pruned: stopped by a tuner (StopRun)


@dataclass
class StoredRun:
    """Everything a finished (or failed) run leaves behind."""

    run_id: str
    row: dict[str, Any]  # the run row: flat scalars only
    epochs: pd.DataFrame
    ranks: pd.DataFrame = field(default_factory=pd.DataFrame)  # columns: split, user, rank
    checkpoint: dict[str, torch.Tensor] | None = None


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / RUNS_DIR

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def has(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "run.parquet").is_file()

    def write(self, run: StoredRun) -> Path:
        """Write a whole run atomically (replacing an earlier failed or interrupted one)."""
        target = self.run_dir(run.run_id)
        try:
            with atomic_directory(target, overwrite=True) as tmp:
                pq.write_table(pa.Table.from_pylist([run.row]), tmp / "run.parquet")
                pq.write_table(pa.Table.from_pandas(run.epochs, preserve_index=False), tmp / "epochs.parquet")
                pq.write_table(pa.Table.from_pandas(run.ranks, preserve_index=False), tmp / "ranks.parquet")
                if run.checkpoint is not None:
                    torch.save(run.checkpoint, tmp / "checkpoint.pt")
        except PermissionError as error:
            raise InputError(f"cannot write runs into {self.root} ({error.strerror}): choose a writable --results") from None
        return target

    def run_files(self) -> list[Path]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(path for path in self.runs_dir.glob("*/run.parquet") if not path.parent.name.startswith("."))

    def table(self) -> pd.DataFrame:
        """All stored runs as one table (a pyarrow dataset over the run rows)."""
        files = self.run_files()
        if not files:
            return pd.DataFrame()
        schema = pa.unify_schemas([pq.read_schema(path) for path in files], promote_options="permissive")
        return pads.dataset([str(path) for path in files], schema=schema, format="parquet").to_table().to_pandas()

    def row(self, run_id: str) -> dict[str, Any]:
        if not self.has(run_id):
            raise InputError(f"no stored run '{run_id}' in {self.root}: list runs with `seqbench runs`")
        return pq.read_table(self.run_dir(run_id) / "run.parquet").to_pylist()[0]

    def epochs(self, run_id: str) -> pd.DataFrame:
        return pq.read_table(self.run_dir(run_id) / "epochs.parquet").to_pandas()

    def ranks(self, run_id: str, split: str | None = None) -> pd.DataFrame:
        frame = pq.read_table(self.run_dir(run_id) / "ranks.parquet").to_pandas()
        return frame if split is None or frame.empty else frame[frame["split"] == split].reset_index(drop=True)

    def checkpoint(self, run_id: str) -> dict[str, torch.Tensor]:
        path = self.run_dir(run_id) / "checkpoint.pt"
        if not path.is_file():
            raise InputError(f"run '{run_id}' has no checkpoint (status {self.row(run_id).get('status')}): re-run it")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for a file that is not a checkpoint
            raise InputError(f"{path} is not a readable checkpoint ({type(error).__name__}): re-run the training") from None

    def config(self, run_id: str) -> dict[str, Any]:
        return json.loads(self.row(run_id)["config_json"])


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
