"""Atomic replacement: a process killed (SIGKILL) in the middle of replacing a directory never
leaves the target missing or half-written, and its leftovers are cleaned up by the next writer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from seqbench.atomic import atomic_directory, exchange, recover, recover_siblings
from seqbench.data.sequences import is_prepared
from seqbench.storage.store import RunStore

REPO = Path(__file__).resolve().parents[1]

# The child replaces ``target`` (holding old.txt) by a directory holding new.txt, and kills itself
# with SIGKILL at the chosen point: after the first rename of the fallback path (the old window),
# or right after the single exchange.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import seqbench.atomic as atomic

    target, where = Path(sys.argv[1]), sys.argv[2]
    real_rename, real_exchange = os.rename, atomic.exchange

    def killed_after(function):
        def wrapper(*args):
            result = function(*args)
            if Path(args[0]).name == target.name or Path(args[1]).name == target.name:
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapper

    if where == "between-renames":
        atomic.exchange = lambda a, b: False  # the fallback: rename away, then rename in
        atomic.os.rename = killed_after(real_rename)
    else:
        atomic.exchange = killed_after(real_exchange)
    with atomic.atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    """
)


def run_child(target: Path, where: str) -> int:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", CHILD, str(target), where], env=env, timeout=120).returncode


def make_old(target: Path) -> None:
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old")


def test_a_kill_between_the_two_renames_is_undone_on_the_next_start(tmp_path: Path) -> None:
    target = tmp_path / "lastfm"
    make_old(target)
    assert run_child(target, "between-renames") == -9  # it really died at the hook
    assert not target.exists()  # the window the fallback has: the old directory is moved away
    assert [p.name for p in tmp_path.iterdir() if ".old-" in p.name]
    recover(target)  # what the next reader or writer does first
    assert (target / "old.txt").read_text() == "old"
    recover_siblings(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lastfm"]  # the dead writer's temporary folder is gone


def test_readers_recover_a_prepared_data_set_and_a_run_lost_in_the_window(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_old(data / "toy")
    (data / "toy" / "meta.json").write_text("{}")
    assert run_child(data / "toy", "between-renames") == -9
    assert is_prepared("toy", data)  # recovered by the check itself
    assert (data / "toy" / "old.txt").is_file()
    run = tmp_path / "results" / "runs" / "toy-gru4rec-bce-s0-123456789abc"
    make_old(run)
    (run / "run.parquet").write_text("x")
    assert run_child(run, "between-renames") == -9
    assert RunStore(tmp_path / "results").has(run.name)


def test_with_the_exchange_a_kill_leaves_the_new_directory_complete(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    make_old(first)
    second.mkdir()
    if not exchange(first, second):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available on this system or file system")
    assert (second / "old.txt").is_file() and not (first / "old.txt").exists()  # swapped in one step
    first.rmdir()
    target = tmp_path / "lastfm"
    second.rename(target)
    assert run_child(target, "after-exchange") == -9
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]  # never a moment without a whole target
    with atomic_directory(target, overwrite=True) as tmp:  # the next writer cleans the old copy up
        (tmp / "third.txt").write_text("3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lastfm"]
    assert sorted(p.name for p in target.iterdir()) == ["third.txt"]


def test_a_stale_legacy_tmp_folder_is_removed_but_a_fresh_one_is_kept(tmp_path: Path) -> None:
    stale, fresh = tmp_path / ".yelp.tmp-abcd1234", tmp_path / ".yelp.tmp-efgh5678"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "part.parquet").write_bytes(b"x" * 100)
    old = time.time() - 3 * 24 * 3600
    os.utime(stale, (old, old))
    recover_siblings(tmp_path)
    assert not stale.exists() and fresh.exists()


def test_a_failed_block_leaves_the_old_directory(tmp_path: Path) -> None:
    target = tmp_path / "lastfm"
    make_old(target)
    with pytest.raises(RuntimeError), atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("parse failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lastfm"]
    assert (target / "old.txt").read_text() == "old"


def test_a_figure_that_fails_mid_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    import errno

    from matplotlib.figure import Figure

    from seqbench.atomic import save_figure_atomically

    figure = Figure()
    figure.add_subplot().plot([1, 2], [3, 4])
    target = tmp_path / "figures" / "curve.pdf"
    save_figure_atomically(figure, target)
    before = target.read_bytes()
    assert before.startswith(b"%PDF")  # the format comes from the target's suffix, not the temp name

    def full_disk(path: Path, **options: object) -> None:
        Path(path).write_bytes(b"%PDF-1.4 trunc")  # part of the file made it to disk
        raise OSError(errno.ENOSPC, "No space left on device")

    figure.savefig = full_disk  # type: ignore[method-assign]
    with pytest.raises(OSError):
        save_figure_atomically(figure, target)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["curve.pdf"]
    with pytest.raises(OSError):
        save_figure_atomically(figure, tmp_path / "figures" / "new.png")
    assert not (tmp_path / "figures" / "new.png").exists()
