"""Shared fixtures: tiny data written by the tests themselves, and the offline mirror when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Test shapes are tiny: intra-op threads only add synchronisation, and with `pytest -n 2` two
# workers x two OpenMP threads oversubscribe a 2-core machine (measured: 4x slower under load).
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
MIRROR_CANDIDATES = [os.environ.get("SEQBENCH_MIRROR", ""), str(REPO.parent / "shared" / "datasets")]


def find_mirror() -> Path | None:
    for candidate in MIRROR_CANDIDATES:
        if candidate and (Path(candidate) / "s3rec").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mirror() -> Path:
    found = find_mirror()
    if found is None:
        pytest.skip("offline data mirror not found (set SEQBENCH_MIRROR)")
    return found


def write_toy_dataset(data_dir: Path, name: str = "toy", users: int = 120, items: int = 40, seed: int = 0) -> Path:
    """A tiny prepared data set with strong sequential structure (next item = current + 1, mostly).

    Written with the project's own Parquet writer so tests do not depend on `prepare`.
    """
    import numpy as np

    from seqbench.data.sequences import (
        EvalSplit,
        PreparedDataset,
        Ragged,
        save_prepared,
    )

    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(users):
        length = int(rng.integers(5, 16))
        start = int(rng.integers(1, items + 1))
        steps = np.where(rng.random(length) < 0.9, 1, rng.integers(2, items, size=length))
        sequences.append(((start - 1 + np.concatenate([[0], np.cumsum(steps[1:])])) % items + 1).tolist())
    train = Ragged.from_lists([s[:-2] for s in sequences])
    valid = EvalSplit(np.arange(users), Ragged.from_lists([s[:-2] for s in sequences]), np.array([s[-2] for s in sequences]))
    test = EvalSplit(np.arange(users), Ragged.from_lists([s[:-1] for s in sequences]), np.array([s[-1] for s in sequences]))
    attributes = Ragged.from_lists([[]] + [[1 + (i % 5), 6 + (i % 3)] for i in range(1, items + 1)])
    dataset = PreparedDataset(name, items, np.arange(users), train, valid, test, attributes, 8, {"split": "leave-one-out"})
    save_prepared(dataset, data_dir / name)
    return data_dir / name


@pytest.fixture()
def toy_data(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    write_toy_dataset(data_dir)
    return data_dir
