"""The data set registry: the shipped YAML, its top-level link, and user registries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seqbench.data.registry import BUILTIN_REGISTRY, load_registry
from seqbench.errors import InputError

REPO = Path(__file__).resolve().parents[1]
REQUIRED = ["beauty", "sports", "toys", "yelp", "lastfm", "ml-latest-small", "amazon-beauty-raw", "amazon-sports-raw",
            "amazon-toys-raw", "ml-1m", "lastfm-hetrec", "yelp-raw", "gowalla", "synthetic"]


def test_top_level_datasets_yaml_is_the_packaged_file() -> None:
    top = REPO / "datasets.yaml"
    assert top.is_symlink() and top.resolve() == BUILTIN_REGISTRY.resolve()


def test_every_required_entry_is_registered_and_complete() -> None:
    registry = load_registry()
    assert set(REQUIRED) <= set(registry.names())
    for name in registry.names():
        entry = registry.get(name)
        assert entry.description and entry.citation and entry.license, name
        for source in entry.files:
            assert source.url.startswith(("https://", "http://")), name
            assert source.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", source.sha256), name
    assert registry.get("synthetic").synthetic is not None and registry.get("synthetic").files == ()
    assert registry.get("ml-latest-small").files[0].member == "ml-latest-small/ratings.csv"
    assert registry.get("ml-latest-small-temporal").split.kind == "temporal"


def test_registered_hashes_are_those_of_the_mirror(mirror: Path) -> None:
    """The S3-Rec and ml-latest-small hashes come from the mirror's SHA256SUMS, file by file."""
    registry = load_registry()
    checked = 0
    for name in ("beauty", "sports", "toys", "yelp", "lastfm", "ml-latest-small"):
        for source in registry.get(name).files:
            sums = (mirror / source.mirror_folder / "SHA256SUMS").read_text().split("\n")
            table = {line.split()[1]: line.split()[0] for line in sums if line.strip()}
            assert table[source.file_name] == source.sha256, (name, source.file_name)
            checked += 1
    assert checked == 12


def test_a_user_registry_adds_and_overrides_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "mine.yaml"
    extra.write_text(
        "datasets:\n"
        "  mine:\n"
        "    description: my data\n"
        "    files: [{role: interactions, format: movielens-csv, url: 'https://x.org/r.csv', sha256: null, mirror_folder: mine}]\n"
        "  lastfm:\n"
        "    description: overridden\n"
        "    files: [{role: interactions, format: s3rec-sequences, url: 'https://x.org/L.txt', sha256: null, mirror_folder: s3rec}]\n"
        "    recipe: {dedup: none, user_k: 0, item_k: 0}\n"
    )
    monkeypatch.setenv("SEQBENCH_DATASETS", str(extra))
    registry = load_registry()
    assert registry.get("mine").recipe.user_k == 5  # defaults: 5-core, first event per pair, leave-one-out
    assert registry.get("mine").split.kind == "leave-one-out"
    assert registry.get("lastfm").description == "overridden" and "beauty" in registry.names()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("datasets:\n  x: {files: [{role: interactions, format: f, url: u, sha256: null, mirror_folder: m, colour: red}]}\n", "unexpected keyword argument 'colour'"),
        ("datasets:\n  x: {files: [], recipe: {dedup: some}}\n", "dedup 'some' is not one of"),
        ("datasets:\n  x: {files: []}\n", "needs a file with role 'interactions'"),
        ("datasets:\n  x: {files: [{role: interactions, format: f, url: u, sha256: null, mirror_folder: m}], split: {kind: random}}\n", "split 'random'"),
        ("datasets: [1, 2]\n", "has no 'datasets:' mapping"),
        ("datasets:\n  x: [unclosed\n", "cannot read data set registry"),
    ],
)
def test_bad_registry_files_are_input_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(InputError, match=re.escape(message)):
        load_registry(path)
