"""One writer per run: an exclusive ``fcntl`` lock on ``results/locks/<run_id>.lock`` while a
process trains that run. The kernel releases it when the process ends however it ends (kill -9
included), so a lock is never stale. The holder removes the file when it is done (no lock files
pile up, and a refused command leaves none behind); a waiter that then holds the lock of a removed
file notices it (the path no longer names the file it locked) and locks the path anew.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from seqbench.errors import InputError


@contextlib.contextmanager
def exclusive(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock at ``path``; when another process holds it, call ``on_wait`` once and wait."""
    waited = False
    while True:
        descriptor = _open(path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None and not waited:
                on_wait()
                waited = True
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        if _names(path, descriptor):
            break
        os.close(descriptor)  # its holder removed that file on release: lock the path anew
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # removed while still held, so nobody can lock a file that is going away
        os.close(descriptor)  # closing the descriptor releases the lock


def _open(path: Path) -> int:
    """The lock file, created if needed; a store that cannot hold it is an input error, said before
    any training (read-only, full, or a symlink planted where the lock should be: ``O_NOFOLLOW``)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        raise InputError(f"cannot lock {path} ({error.strerror or error}): choose a writable --results directory") from None


def _names(path: Path, descriptor: int) -> bool:
    """Whether ``path`` still names the file open as ``descriptor``."""
    try:
        on_disk = path.stat(follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)
