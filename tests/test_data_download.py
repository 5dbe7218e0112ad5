"""Fetching raw files: mirror lookup, sha256 verification, the raw cache, downloads, zip members."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from seqbench.data.download import check_member_name, fetch
from seqbench.data.registry import SourceFile
from seqbench.errors import InputError

CONTENT = b"1 2 3\n2 3 4\n"
DIGEST = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture(autouse=True)
def file_urls_stand_in_for_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # The download tests serve files as file:// URLs, which real registries may not use.
    monkeypatch.setattr("seqbench.data.registry.ALLOWED_SCHEMES", ("https", "http", "file"))


def source(url: str = "https://example.org/data/Tiny.txt", sha256: str | None = DIGEST, member: str | None = None) -> SourceFile:
    return SourceFile(role="interactions", format="s3rec-sequences", url=url, sha256=sha256, mirror_folder="tiny", member=member)


def make_mirror(root: Path, name: str = "Tiny.txt", content: bytes = CONTENT) -> Path:
    (root / "tiny").mkdir(parents=True, exist_ok=True)
    (root / "tiny" / name).write_bytes(content)
    return root


def test_mirror_file_is_verified_and_cached(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path / "mirror")
    got = fetch(source(), tmp_path / "raw", mirror)
    assert got.origin == "mirror" and got.verified and got.sha256 == DIGEST
    assert got.path == tmp_path / "raw" / "tiny" / "Tiny.txt" and got.path.read_bytes() == CONTENT
    (mirror / "tiny" / "Tiny.txt").unlink()
    assert fetch(source(), tmp_path / "raw", mirror).origin == "cache"  # no second copy needed


def test_checksum_mismatch_names_file_expected_and_actual_and_keeps_nothing(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path / "mirror", content=b"tampered\n")
    actual = hashlib.sha256(b"tampered\n").hexdigest()
    with pytest.raises(InputError) as caught:
        fetch(source(), tmp_path / "raw", mirror)
    message = caught.value.message
    assert str(mirror / "tiny" / "Tiny.txt") in message and DIGEST in message and actual in message
    assert not [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]


def test_corrupted_cache_entry_is_replaced(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path / "mirror")
    cached = tmp_path / "raw" / "tiny" / "Tiny.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a fi")
    got = fetch(source(), tmp_path / "raw", mirror)
    assert got.origin == "mirror" and cached.read_bytes() == CONTENT


def test_missing_mirror_file(tmp_path: Path) -> None:
    (tmp_path / "mirror").mkdir()
    with pytest.raises(InputError, match=r"missing mirror file .*mirror/tiny/Tiny.txt \(source https://example.org/data/Tiny.txt\)"):
        fetch(source(), tmp_path / "raw", tmp_path / "mirror")


def test_unknown_hash_is_used_unverified(tmp_path: Path) -> None:
    got = fetch(source(sha256=None), tmp_path / "raw", make_mirror(tmp_path / "mirror"))
    assert not got.verified and got.sha256 == DIGEST


def test_download_from_url(tmp_path: Path) -> None:
    served = tmp_path / "server" / "Tiny.txt"
    served.parent.mkdir()
    served.write_bytes(CONTENT)
    got = fetch(source(url=served.as_uri()), tmp_path / "raw", show_progress=True)
    assert got.origin == "download" and got.path.read_bytes() == CONTENT


def test_downloaded_file_with_wrong_hash_is_deleted(tmp_path: Path) -> None:
    served = tmp_path / "server" / "Tiny.txt"
    served.parent.mkdir()
    served.write_bytes(b"something else\n")
    with pytest.raises(InputError, match=f"checksum mismatch for Tiny.txt downloaded from .*expected sha256 {DIGEST}, got "):
        fetch(source(url=served.as_uri()), tmp_path / "raw")
    assert not [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]


def test_download_failure_is_a_runtime_error(tmp_path: Path) -> None:
    from seqbench.errors import RuntimeFailure

    with pytest.raises(RuntimeFailure, match="download of .* failed .*--mirror DIR"):
        fetch(source(url=(tmp_path / "absent.txt").as_uri()), tmp_path / "raw")


def zip_with(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def test_zip_member_is_extracted_and_verified(tmp_path: Path) -> None:
    archive = zip_with(tmp_path / "server" / "bundle.zip", {"bundle/Tiny.txt": CONTENT, "bundle/other.txt": b"x"})
    got = fetch(source(url=archive.as_uri(), member="bundle/Tiny.txt"), tmp_path / "raw")
    assert got.path == tmp_path / "raw" / "tiny" / "Tiny.txt" and got.path.read_bytes() == CONTENT
    assert (tmp_path / "raw" / "tiny" / "bundle.zip").is_file()  # archive cached for the other members


def test_member_is_read_from_the_mirror_by_basename(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path / "mirror")
    got = fetch(source(url="https://example.org/bundle.zip", member="bundle/Tiny.txt"), tmp_path / "raw", mirror)
    assert got.origin == "mirror" and got.path.read_bytes() == CONTENT


def test_truncated_zip_is_rejected_and_deleted(tmp_path: Path) -> None:
    archive = zip_with(tmp_path / "server" / "bundle.zip", {"bundle/Tiny.txt": CONTENT * 500})
    archive.write_bytes(archive.read_bytes()[:-40])
    with pytest.raises(InputError, match=r"corrupt or truncated archive .*bundle.zip .*deleted"):
        fetch(source(url=archive.as_uri(), member="bundle/Tiny.txt"), tmp_path / "raw")
    assert not [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]


def test_zip_with_corrupt_member_data_is_rejected(tmp_path: Path) -> None:
    archive = zip_with(tmp_path / "server" / "bundle.zip", {"Tiny.txt": CONTENT * 500})
    data = bytearray(archive.read_bytes())
    data[60:70] = b"\x00" * 10  # inside the compressed member
    archive.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt or truncated archive"):
        fetch(source(url=archive.as_uri(), member="Tiny.txt"), tmp_path / "raw")


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/passwd", "a/../../b.txt", "C:\\x.txt", "..\\x.txt"])
def test_path_traversal_member_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match="unsafe archive member name"):
        check_member_name(name)
    archive = zip_with(tmp_path / "server" / "bundle.zip", {name: CONTENT})
    with pytest.raises(InputError, match="unsafe archive member name"):
        fetch(source(url=archive.as_uri(), member=name), tmp_path / "raw")
    assert not (tmp_path / "evil.txt").exists()


def test_manual_download_sources_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot be downloaded automatically: get it from .* --mirror DIR"):
        fetch(source(), tmp_path / "raw", manual_download=True)


@pytest.mark.parametrize(
    ("url", "sha256", "message"),
    [
        ("file:///etc/passwd", DIGEST, "scheme 'file'"),
        ("ftp://example.org/Tiny.txt", DIGEST, "scheme 'ftp'"),
        ("http://example.org/Tiny.txt", None, "plain http and the entry has no sha256"),
    ],
)
def test_only_https_or_checksummed_http_is_fetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, sha256: str | None, message: str) -> None:
    monkeypatch.setattr("seqbench.data.registry.ALLOWED_SCHEMES", ("https", "http"))
    with pytest.raises(InputError, match=message):
        fetch(source(url, sha256), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_a_download_over_its_size_cap_keeps_nothing(tmp_path: Path) -> None:
    from dataclasses import replace

    from seqbench.errors import RuntimeFailure

    served = tmp_path / "server" / "Tiny.txt"
    served.parent.mkdir()
    served.write_bytes(CONTENT)
    capped = replace(source(served.as_uri()), max_bytes=len(CONTENT) - 1)
    with pytest.raises(RuntimeFailure, match="more than 11 bytes"):
        fetch(capped, tmp_path / "raw")
    assert list((tmp_path / "raw").rglob("*Tiny*")) == []


def test_force_refetches_a_cached_file(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path / "mirror")
    fetch(source(sha256=None), tmp_path / "raw", mirror)
    (mirror / "tiny" / "Tiny.txt").write_bytes(b"9 8 7\n")
    assert fetch(source(sha256=None), tmp_path / "raw", mirror).path.read_bytes() == CONTENT  # the cache wins
    again = fetch(source(sha256=None), tmp_path / "raw", mirror, refresh=True)
    assert again.origin == "mirror" and again.path.read_bytes() == b"9 8 7\n"
