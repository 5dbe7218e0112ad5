"""A full or read-only results disk, through the real entry point (stdout and stderr as pipes): a
small tmpfs where this machine lets the test mount one, an injected ``OSError`` otherwise."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ARGS = ["--dataset", "toy", "--model", "gru4rec", "--loss", "bce", "--epochs", "2", "--set", "max_len=10", "--set", "threads=1"]
INJECT_FULL = """
import errno
from seqbench.storage import store

def full(self, run, replace_completed=False):
    raise OSError(errno.ENOSPC, "No space left on device")

store.RunStore.write = full  # this process's disk is full when the run is stored
"""


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[bool]:
    """Mount a tmpfs at ``path`` if this machine allows it (root, no container rule against it)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def seqbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1]), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "seqbench", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]


@pytest.mark.parametrize("how", ["tmpfs", "injected"])
def test_a_full_disk_when_storing_is_one_line_exit_1_and_no_half_written_file(how: str, toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    with tmpfs(results, "size=4m") as mounted:
        if how == "tmpfs":
            if not mounted:
                pytest.skip("cannot mount a tmpfs here; the injected case covers it")
            # Leave ~48 KiB: locks and the live log fit, a checkpoint does not.
            filler = results / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as out:
                out.write(b"\0" * (4 * 2**20 - 48 * 2**10))
            extra: list[str] = []
        else:
            (tmp_path / "inject_full.py").write_text(INJECT_FULL)
            extra = ["--plugin", str(tmp_path / "inject_full.py")]
        done = seqbench("train", *ARGS, "--data-dir", str(toy_data), "--results", str(results), *extra, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        message = done.stderr.strip().splitlines()[-1]
        assert message.startswith("error: storing run ") and "No space left on device" in message, message
        assert str(results) in message and "MiB free there" in message and "run the same command again" in message
        assert "Traceback" not in done.stderr
        assert not (results / "runs").exists() or not any((results / "runs").iterdir())  # no half-written run
        assert leftovers(results) == []


@pytest.mark.parametrize("how", ["tmpfs", "injected"])
def test_a_read_only_results_disk_is_refused_before_training(how: str, toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    with tmpfs(results, "size=1m,ro") as mounted:
        if how == "tmpfs":
            if not mounted:
                pytest.skip("cannot mount a tmpfs here; the injected case covers it")
            extra: list[str] = []
        else:
            inject = tmp_path / "inject_ro.py"
            inject.write_text(f"import os\nreal = os.access\nos.access = lambda p, m, **k: False if str(p) == {str(results / 'runs')!r} "
                              f"or str(p) == {str(results)!r} else real(p, m, **k)\n")
            results.mkdir(exist_ok=True)
            extra = ["--plugin", str(inject)]
        done = seqbench("train", *ARGS, "--data-dir", str(toy_data), "--results", str(results), *extra, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "is not writable" in done.stderr and " epoch " not in done.stderr  # refused before any training
