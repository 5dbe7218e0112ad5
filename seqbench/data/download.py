"""Getting raw files: from the raw cache, an offline mirror, or the source URL, always verified.

Raw files are cached in ``<data_dir>/.raw/<mirror_folder>/<file>`` (the same relative layout as a
mirror). Every file is written under a temporary name while its sha256 is computed, and renamed into
place only when the hash matches the registry, so a bad or partial file is never kept. Archive
members are extracted by name into the cache folder; an archive entry can never choose where it is
written, so path traversal (``../x``, absolute names) is impossible and is rejected outright.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)

from seqbench.atomic import atomic_file
from seqbench.data.registry import SourceFile, check_url, local_path
from seqbench.errors import InputError, RuntimeFailure
from seqbench.names import check_name, check_relative

CHUNK = 1 << 20
RAW_DIR = ".raw"
# Limits of one download: an overall deadline (the per-read timeout alone lets a slow server
# trickle forever) and a size cap, from the registry's ``max_bytes``, else the announced
# Content-Length plus a margin, else DEFAULT_MAX_BYTES; archive members are capped the same way.
DOWNLOAD_SECONDS = 4 * 3600
READ_TIMEOUT = 60
DEFAULT_MAX_BYTES = 32 << 30
SIZE_MARGIN = 1 << 20
progress_console = Console(stderr=True)


@dataclass(frozen=True)
class FetchedFile:
    source: SourceFile
    path: Path
    sha256: str
    verified: bool  # False when the registry has no hash for the file
    origin: str  # "cache", "mirror" or "download"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _chunks(reader: IO[bytes]) -> Iterator[bytes]:
    return iter(lambda: reader.read(CHUNK), b"")


def _copy_hashing(
    reader: IO[bytes], target: Path, total: int | None, label: str, show: bool,
    max_bytes: int | None = None, deadline: float | None = None,
) -> str:
    """Stream ``reader`` into ``target`` (a temporary path), with a progress bar; return the sha256.

    More than ``max_bytes`` bytes, or still copying at ``deadline`` (``time.monotonic()``), is a
    :class:`RuntimeFailure`; the caller's atomic write then keeps nothing.
    """
    digest = hashlib.sha256()
    written = 0
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    hidden = not (show and progress_console.is_terminal)
    with open(target, "wb") as out, Progress(*columns, console=progress_console, disable=hidden, transient=True) as bar:
        task = bar.add_task(label, total=total)
        for block in _chunks(reader):
            written += len(block)
            if max_bytes is not None and written > max_bytes:
                raise RuntimeFailure(
                    f"{label}: more than {max_bytes} bytes, the limit for this file: nothing was kept "
                    "(raise max_bytes in the registry if it is right)"
                )
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeFailure(
                    f"{label}: not done after {DOWNLOAD_SECONDS} s: nothing was kept; run again, or use --mirror DIR with an offline copy"
                )
            digest.update(block)
            out.write(block)
            bar.advance(task, len(block))
    return digest.hexdigest()


def size_cap(source: SourceFile, announced: int | None) -> int:
    """The most bytes accepted for ``source``: the registry's cap, else the announced size + margin."""
    if source.max_bytes is not None:
        return source.max_bytes
    if announced is not None:
        return announced + SIZE_MARGIN
    return DEFAULT_MAX_BYTES


def _check_hash(source: SourceFile, actual: str, shown_as: str) -> None:
    if source.sha256 is not None and actual != source.sha256.lower():
        raise InputError(
            f"checksum mismatch for {shown_as}: expected sha256 {source.sha256}, got {actual}; "
            "the file was not kept: replace it with the published file (or fix the sha256 in the registry)"
        )


def check_member_name(member: str) -> None:
    """Reject archive member names that would point outside the extraction folder."""
    path = PurePosixPath(member.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise InputError(f"unsafe archive member name '{member}': absolute paths and '..' are not extracted")


def cache_path(source: SourceFile, cache_root: Path) -> Path:
    check_relative("mirror_folder", source.mirror_folder)
    check_name("raw file", source.file_name)
    return cache_root / source.mirror_folder / source.file_name


def fetch(
    source: SourceFile,
    cache_root: Path,
    mirror: Path | None = None,
    show_progress: bool = False,
    manual_download: bool = False,
    refresh: bool = False,
) -> FetchedFile:
    """The verified local copy of ``source``: cached, copied from ``mirror``, or downloaded.

    ``refresh`` (``prepare --force``) ignores and replaces the cached copy (and its archive).
    """
    if source.member is not None:
        check_member_name(source.member)
    check_url(source)
    local = local_path(source.url)
    if local is not None:  # read where it is: a copy in the cache would only go stale
        return _local(source, local)
    target = cache_path(source, cache_root)
    if refresh:
        target.unlink(missing_ok=True)
        if source.archive_name is not None:
            (target.parent / source.archive_name).unlink(missing_ok=True)
    if target.is_file():
        actual = sha256_of(target)
        if source.sha256 is None or actual == source.sha256.lower():
            return FetchedFile(source, target, actual, source.sha256 is not None, "cache")
        target.unlink()  # a corrupted cache entry: fetch it again
    if mirror is not None:
        actual = _from_mirror(source, Path(mirror), target, show_progress)
        origin = "mirror"
    elif manual_download:
        raise InputError(
            f"{source.file_name} cannot be downloaded automatically: get it from {source.url} (accept the terms), "
            f"put it in DIR/{source.mirror_folder}/ and run again with --mirror DIR"
        )
    elif source.member is not None:
        actual = _from_archive(source, target, show_progress)
        origin = "download"
    else:
        actual = _download_verified(source, target, show_progress)
        origin = "download"
    return FetchedFile(source, target, actual, source.sha256 is not None, origin)


def _local(source: SourceFile, path: Path) -> FetchedFile:
    if not path.is_file():
        raise InputError(f"local file {path} does not exist (or is not a file): give the path of your interactions file")
    actual = sha256_of(path)
    _check_hash(source, actual, str(path))
    return FetchedFile(source, path, actual, source.sha256 is not None, "local")


def _from_mirror(source: SourceFile, mirror: Path, target: Path, show: bool) -> str:
    found = mirror / check_relative("mirror_folder", source.mirror_folder) / check_name("raw file", source.file_name)
    if not found.is_file():
        raise InputError(
            f"missing mirror file {found} (source {source.url}): add it to the mirror, or run without --mirror to download"
        )
    with atomic_file(target) as tmp, open(found, "rb") as reader:
        actual = _copy_hashing(reader, tmp, found.stat().st_size, f"copy {source.file_name}", show)
        _check_hash(source, actual, str(found))
    return actual


def _open_url(url: str) -> tuple[BinaryIO, int | None]:
    try:
        response = urllib.request.urlopen(url, timeout=READ_TIMEOUT)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise RuntimeFailure(
            f"download of {url} failed ({reason}): check the network, or use --mirror DIR with an offline copy"
        ) from None
    length = response.headers.get("Content-Length")
    return response, int(length) if length and length.isdigit() else None


def _download(source: SourceFile, target: Path, label: str, show: bool) -> str:
    """Download ``source.url`` to ``target`` atomically; return its sha256."""
    url = source.url
    response, total = _open_url(url)
    deadline = time.monotonic() + DOWNLOAD_SECONDS
    with response, atomic_file(target) as tmp:
        try:
            actual = _copy_hashing(response, tmp, total, label, show, size_cap(source, total), deadline)
        except OSError as error:
            raise RuntimeFailure(f"download of {url} was interrupted ({error}): run the command again") from None
        if total is not None and tmp.stat().st_size != total:
            raise RuntimeFailure(f"download of {url} is truncated ({tmp.stat().st_size} of {total} bytes): run again")
    return actual


def _download_verified(source: SourceFile, target: Path, show: bool) -> str:
    response, total = _open_url(source.url)
    deadline = time.monotonic() + DOWNLOAD_SECONDS
    with response, atomic_file(target) as tmp:
        actual = _copy_hashing(response, tmp, total, f"download {source.file_name}", show, size_cap(source, total), deadline)
        _check_hash(source, actual, f"{source.file_name} downloaded from {source.url}")
    return actual


def _from_archive(source: SourceFile, target: Path, show: bool) -> str:
    """Download the archive (once) into the cache, then extract and verify the member."""
    assert source.member is not None and source.archive_name is not None
    archive = target.parent / source.archive_name
    if not archive.is_file():
        _download(source, archive, f"download {source.archive_name}", show)
    try:
        actual = extract_member(archive, source.member, target, source.max_bytes)
        _check_hash(source, actual, f"{source.member} in {archive}")
    except InputError:
        archive.unlink(missing_ok=True)  # the archive is the bad file: do not keep it
        raise
    return actual


def extract_member(archive: Path, member: str, target: Path, max_bytes: int | None = None) -> str:
    """Extract one member of a zip archive to ``target`` (atomically); return its sha256.

    The decompressed size is capped (``max_bytes``, else the size the archive declares plus a
    margin, never more than DEFAULT_MAX_BYTES): a small archive cannot fill the disk.
    """
    check_member_name(member)
    try:
        with zipfile.ZipFile(archive) as bundle:
            if member not in bundle.namelist():
                raise InputError(f"archive {archive} has no member '{member}': check the registry entry's member path")
            declared = bundle.getinfo(member).file_size
            cap = max_bytes if max_bytes is not None else min(declared + SIZE_MARGIN, DEFAULT_MAX_BYTES)
            with bundle.open(member) as reader, atomic_file(target) as tmp:
                return _copy_hashing(reader, tmp, declared, f"extract {member}", False, cap)
    except (zipfile.BadZipFile, EOFError, zlib.error, zipfile.LargeZipFile) as error:
        raise InputError(
            f"corrupt or truncated archive {archive} ({error}): it was deleted; run again to fetch it afresh"
        ) from None

