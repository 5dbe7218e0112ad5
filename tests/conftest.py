"""Shared fixtures: tiny data written by the tests themselves, and the offline mirror when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
