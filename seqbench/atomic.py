"""Write files and directories so that a crash never leaves a half-written result, or none.

Everything is written under a temporary sibling name and renamed into place once complete;
``os.replace``/``os.rename`` within one file system is atomic. Replacing an existing directory
swaps the two in one step (Linux ``renameat2(RENAME_EXCHANGE)``), so there is no moment without
a complete ``target``. Where the swap is not available, the old directory is renamed away to
``.<name>.old-<pid>`` first; if the process dies before the new one is in place, the next
process that looks (:func:`recover`) renames the old one back. Temporary folders carry the pid of
their writer, so those of a dead process are removed by the next writer in the same folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RENAME_EXCHANGE = 2  # linux/fs.h
# Temporary folders from before their names carried a pid: removed once clearly abandoned.
LEGACY_TMP_SECONDS = 24 * 3600
_SIBLING = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?:-.*)?")
_LEGACY_TMP = re.compile(r"\.(?P<name>.+)\.tmp-[a-z0-9_]{8}")


def _renameat2() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_RENAMEAT2 = _renameat2()
AT_FDCWD = -100


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically; False where the system or file system cannot."""
    if _RENAMEAT2 is None:
        return False
    result = _RENAMEAT2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE)  # type: ignore[operator]
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def recover(target: Path) -> None:
    """Put back ``target`` if a replacement was killed after moving the old one away."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return
    for trash in sorted(target.parent.glob(f".{glob_escape(target.name)}.old-*")):
        found = _SIBLING.fullmatch(trash.name)
        if found and not _alive(int(found["pid"])):
            with contextlib.suppress(FileNotFoundError, FileExistsError, OSError):
                os.rename(trash, target)
                return


def recover_siblings(parent: Path) -> None:
    """In ``parent``: restore every target lost between two renames, remove dead writers' leftovers."""
    parent = Path(parent)
    try:
        entries = [entry for entry in parent.iterdir() if entry.name.startswith(".")]
    except OSError:
        return
    for entry in entries:
        found = _SIBLING.fullmatch(entry.name)
        if found is not None:
            if _alive(int(found["pid"])):
                continue
            if found["kind"] == "old" and not (parent / found["name"]).exists():
                recover(parent / found["name"])
                continue
            _remove(entry)
        elif _LEGACY_TMP.fullmatch(entry.name) and _age(entry) > LEGACY_TMP_SECONDS:
            _remove(entry)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _age(path: Path) -> float:
    try:
        return time.time() - path.lstat().st_mtime
    except OSError:
        return 0.0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def atomic_directory(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_siblings(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            if not overwrite:
                raise FileExistsError(f"{target} already exists")
            _replace_directory(tmp, target)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_directory(new: Path, target: Path) -> None:
    if exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the old directory
        return
    trash = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(trash, ignore_errors=True)
    os.rename(target, trash)
    os.rename(new, target)  # a kill before this line is undone by ``recover``
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(target: Path, mode: str = "wb") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; it replaces ``target`` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_siblings(target.parent)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_figure_atomically(figure: Any, path: Path, **options: Any) -> Path:
    """``figure.savefig(path)`` through a temporary file: a full disk or a stop mid-write leaves
    the previous file (or none), never a 0-byte PNG or a truncated PDF."""
    path = Path(path)
    with atomic_file(path) as tmp:
        # The temporary name has no image suffix: the format comes from the target's.
        figure.savefig(tmp, format=path.suffix.lstrip(".").lower() or None, **options)
    return path
