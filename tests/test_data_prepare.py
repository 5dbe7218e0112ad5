"""``seqbench prepare`` end to end on tiny raw files, and every bad input of issue 2.

Each test registers its own data sets through ``SEQBENCH_DATASETS`` (a YAML file the test writes)
and reads raw files from a mirror directory the test writes, so nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.data.prepare import ensure_prepared, prepare
from seqbench.data.sequences import is_prepared, load_prepared
from seqbench.errors import InputError

runner = CliRunner()

# user 1: a duplicate of (1, 10) and a timestamp tie (20 before 30 by file order);
# user 4 has only 1 rating and vanishes under user_k=2, which takes item 50 (only user 4) with it.
RATINGS = """userId,movieId,rating,timestamp
1,30,4.0,200
1,10,4.0,100
1,20,3.0,200
1,10,5.0,300
2,10,4.0,50
2,20,2.0,60
2,30,4.0,70
3,30,1.0,10
3,20,4.0,20
3,10,4.0,30
4,50,4.0,10
"""
MOVIES = 'movieId,title,genres\n10,"A, The",Drama|Comedy\n20,B,Drama\n30,C,(no genres listed)\n50,D,Horror\n'


def sha(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def entry(url: str, member: str | None = None, checksum: str | None = None, **overrides: Any) -> dict[str, Any]:
    files = [{"role": "interactions", "format": "movielens-csv", "url": url, "member": member,
              "sha256": checksum if checksum is not None else sha(RATINGS), "mirror_folder": "tiny"}]
    data = {"description": "tiny test data", "files": files, "recipe": {"dedup": "first", "user_k": 2, "item_k": 2},
            "split": {"kind": "leave-one-out"}}
    data.update(overrides)
    return data


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A mirror with ratings.csv + movies.csv, a registry with the entry ``tiny``, and a data dir."""
    mirror = tmp_path / "mirror"
    (mirror / "tiny").mkdir(parents=True)
    (mirror / "tiny" / "ratings.csv").write_text(RATINGS)
    (mirror / "tiny" / "movies.csv").write_text(MOVIES)
    registry = tmp_path / "datasets.yaml"
    tiny = entry("https://example.org/tiny/ratings.csv")
    tiny["files"].append({"role": "attributes", "format": "movielens-movies-csv", "url": "https://example.org/tiny/movies.csv",
                          "sha256": sha(MOVIES), "mirror_folder": "tiny"})
    register(registry, {"tiny": tiny})
    monkeypatch.setenv("SEQBENCH_DATASETS", str(registry))
    monkeypatch.delenv("SEQBENCH_MIRROR", raising=False)
    return {"mirror": mirror, "registry": registry, "data": tmp_path / "data", "root": tmp_path}


def register(path: Path, entries: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump({"datasets": entries}))


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["prepare", *args])


def leftovers(data_dir: Path, name: str) -> list[str]:
    """Anything a failed prepare of ``name`` could have left: the folder or its temporary siblings."""
    if not data_dir.is_dir():
        return []
    return [p.name for p in data_dir.iterdir() if p.name == name or p.name.startswith(f".{name}.")]


def test_prepare_raw_data_end_to_end(world: dict[str, Path]) -> None:
    result = invoke("tiny", "--mirror", str(world["mirror"]), "--data-dir", str(world["data"]), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["datasets"]
    assert rows == [{"name": "tiny", "users": 3, "items": 3, "interactions": 9, "avg_len": 3.0, "density": 1.0,
                     "path": str(world["data"] / "tiny"), "status": "prepared", "seconds": rows[0]["seconds"],
                     "users_dropped": 0}]
    dataset = load_prepared("tiny", world["data"])
    # items 10, 20, 30 -> 1, 2, 3. User 1 in time order: 10@100, 30@200, 20@200 (tie: file order), 10@300 (dup, dropped)
    assert dataset.num_items == 3
    assert dataset.train.to_lists() == [[1], [1], [3]]
    assert dataset.valid.targets.tolist() == [3, 2, 2] and dataset.test.targets.tolist() == [2, 3, 1]
    assert dataset.test.histories.to_lists() == [[1, 3], [1, 2], [3, 2]]
    assert dataset.item_attributes is not None and dataset.num_attributes == 2  # Comedy, Drama (item 50 dropped)
    assert dataset.item_attributes.to_lists() == [[], [1, 2], [2], []]
    meta = dataset.meta
    assert meta["statistics"]["interactions"] == 9 and meta["users_dropped"] == 0
    assert meta["filtering"]["duplicates_removed"] == 1 and meta["filtering"]["users_removed_by_kcore"] == 1
    assert meta["recipe"] == {"dedup": "first", "user_k": 2, "item_k": 2, "min_rating": None}
    assert [s["sha256"] for s in meta["sources"]] == [sha(RATINGS), sha(MOVIES)] and meta["sources"][0]["verified"] is True
    assert meta["seqbench_version"]
    assert (world["data"] / ".raw" / "tiny" / "ratings.csv").read_text() == RATINGS  # raw cache


def test_mirror_from_the_environment(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQBENCH_MIRROR", str(world["mirror"]))
    monkeypatch.setenv("SEQBENCH_DATA_DIR", str(world["data"]))
    result = invoke("tiny", "--quiet")
    assert result.exit_code == 0, result.output
    assert is_prepared("tiny", world["data"]) and result.stderr == ""


def test_a_concurrent_prepare_of_the_same_set_is_not_an_error(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import seqbench.data.prepare as module

    real = module.save_prepared

    def racing(dataset: Any, directory: Path) -> None:
        real(dataset, directory)
        if not is_prepared("tiny", world["data"]):  # another process finishes first
            real(dataset, world["data"] / "tiny")

    monkeypatch.setattr(module, "save_prepared", racing)
    assert prepare("tiny", world["data"], world["mirror"])["status"] == "prepared"
    assert load_prepared("tiny", world["data"]).num_items == 3 and leftovers(world["data"], "tiny") == ["tiny"]


def test_rerun_is_a_noop_unless_forced(world: dict[str, Path]) -> None:
    args = ("tiny", "--mirror", str(world["mirror"]), "--data-dir", str(world["data"]))
    assert invoke(*args).exit_code == 0
    meta = world["data"] / "tiny" / "meta.json"
    first = meta.stat().st_mtime_ns
    again = invoke(*args)
    assert again.exit_code == 0 and "already prepared" in again.stderr and meta.stat().st_mtime_ns == first
    assert "Users" in again.stdout and "tiny" in again.stdout  # the statistics table is still printed
    forced = invoke(*args, "--force", "--json")
    assert forced.exit_code == 0 and json.loads(forced.stdout)["datasets"][0]["status"] == "prepared"
    assert meta.stat().st_mtime_ns != first


def test_list_shows_every_data_set_and_whether_prepared(world: dict[str, Path]) -> None:
    prepare("tiny", world["data"], world["mirror"])
    result = invoke("--list", "--json", "--data-dir", str(world["data"]))
    rows = {row["name"]: row for row in json.loads(result.stdout)["datasets"]}
    assert {"beauty", "sports", "toys", "yelp", "lastfm", "ml-latest-small", "amazon-beauty-raw", "ml-1m",
            "lastfm-hetrec", "yelp-raw", "gowalla", "synthetic", "tiny"} <= set(rows)
    assert rows["tiny"]["prepared"] is True and rows["beauty"]["prepared"] is False
    text = invoke("--list", "--data-dir", str(world["data"]))
    assert text.exit_code == 0 and "tiny" in text.stdout and "gowalla" in text.stdout


def test_temporal_split_entry(world: dict[str, Path]) -> None:
    register(world["registry"], {"tiny-t": entry("https://example.org/tiny/ratings.csv", split={"kind": "temporal", "quantile": 0.5},
                                                 recipe={"dedup": "first", "user_k": 0, "item_k": 0})})
    stats = prepare("tiny-t", world["data"], world["mirror"])
    meta = load_prepared("tiny-t", world["data"]).meta
    assert stats["interactions"] == 10 and meta["split"]["kind"] == "temporal"
    # 10 timestamps after dedup (10 10 20 30 50 60 70 100 200 200): the median boundary is 55.
    assert meta["split"]["test_boundary"] == 55.0
    # After it: user 1 (all of its events: no history, so not evaluated) and user 2 (60, 70), whose
    # target is its last event (item 30 -> id 3) and whose history is item 10 (id 1) at t=50.
    test = load_prepared("tiny-t", world["data"]).test
    assert test.users.tolist() == [2] and test.targets.tolist() == [3] and test.histories.to_lists() == [[1]]
    assert meta["split"]["test_users_without_history"] == 1


# --- bad input: one line, the right exit code, nothing partial left ---------------------------


def assert_clean_failure(result: Any, code: int, data_dir: Path, name: str, *fragments: str) -> None:
    """Exit code, exactly one ``error:`` line (the last on stderr, after any progress), no
    traceback, nothing on stdout, and no ``data/<name>`` or temporary sibling left behind."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error: ")] == [lines[-1]], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    assert leftovers(data_dir, name) == []


def test_unknown_data_set_lists_known_ones(world: dict[str, Path]) -> None:
    result = invoke("nope", "--data-dir", str(world["data"]))
    assert_clean_failure(result, 2, world["data"], "nope", "unknown data set 'nope'", "beauty", "synthetic", "tiny")


def test_missing_mirror_file(world: dict[str, Path]) -> None:
    (world["mirror"] / "tiny" / "movies.csv").unlink()
    result = invoke("tiny", "--mirror", str(world["mirror"]), "--data-dir", str(world["data"]))
    assert_clean_failure(result, 2, world["data"], "tiny", "missing mirror file", "tiny/movies.csv")


def test_missing_mirror_directory(world: dict[str, Path]) -> None:
    result = invoke("tiny", "--mirror", str(world["root"] / "nowhere"), "--data-dir", str(world["data"]))
    assert_clean_failure(result, 2, world["data"], "tiny", "mirror directory", "nowhere does not exist")


def test_checksum_mismatch_names_file_hashes_and_keeps_no_copy(world: dict[str, Path]) -> None:
    (world["mirror"] / "tiny" / "ratings.csv").write_text(RATINGS + "5,10,4.0,1\n")
    result = invoke("tiny", "--mirror", str(world["mirror"]), "--data-dir", str(world["data"]))
    assert_clean_failure(result, 2, world["data"], "tiny", "checksum mismatch", "ratings.csv",
                         f"expected sha256 {sha(RATINGS)}", f"got {sha(RATINGS + '5,10,4.0,1' + chr(10))}")
    assert not (world["data"] / ".raw" / "tiny" / "ratings.csv").exists()


def test_truncated_archive(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("seqbench.data.registry.ALLOWED_SCHEMES", ("https", "http", "file"))  # file:// stands in for a server
    archive = world["root"] / "server" / "tiny.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("tiny/ratings.csv", RATINGS * 50)
    archive.write_bytes(archive.read_bytes()[:200])
    register(world["registry"], {"zipped": entry(archive.as_uri(), member="tiny/ratings.csv")})
    result = invoke("zipped", "--data-dir", str(world["data"]))
    assert_clean_failure(result, 2, world["data"], "zipped", "corrupt or truncated archive", "tiny.zip")
    assert not (world["data"] / ".raw" / "tiny" / "tiny.zip").exists()


def test_archive_download_end_to_end(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("seqbench.data.registry.ALLOWED_SCHEMES", ("https", "http", "file"))  # file:// stands in for a server
    archive = world["root"] / "server" / "tiny.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("tiny/ratings.csv", RATINGS)
    register(world["registry"], {"zipped": entry(archive.as_uri(), member="tiny/ratings.csv")})
    result = invoke("zipped", "--data-dir", str(world["data"]), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["datasets"][0]["interactions"] == 9


def test_malformed_row_names_file_and_line(world: dict[str, Path]) -> None:
    bad = RATINGS.replace("3,20,4.0,20", "3,20,4.0,noon")
    (world["mirror"] / "tiny" / "ratings.csv").write_text(bad)
    register(world["registry"], {"tiny": entry("https://example.org/tiny/ratings.csv", checksum=sha(bad))})
    result = invoke("tiny", "--mirror", str(world["mirror"]), "--data-dir", str(world["data"]))
    assert_clean_failure(result, 2, world["data"], "tiny", "ratings.csv:10:", "timestamp 'noon' is not an integer")


def test_nothing_left_after_filtering(world: dict[str, Path]) -> None:
    register(world["registry"], {"tiny": entry("https://example.org/tiny/ratings.csv", recipe={"user_k": 5, "item_k": 5})})
    result = invoke("tiny", "--mirror", str(world["mirror"]), "--data-dir", str(world["data"]))
    assert_clean_failure(result, 2, world["data"], "tiny", "no users left after filtering tiny", "user_k=5")


def test_unwritable_data_dir(world: dict[str, Path]) -> None:
    blocker = world["root"] / "a-file"
    blocker.write_text("not a directory")
    result = invoke("tiny", "--mirror", str(world["mirror"]), "--data-dir", str(blocker / "data"))
    assert_clean_failure(result, 2, blocker, "data", f"data dir {blocker / 'data'} is not writable", "--data-dir")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_data_dir(world: dict[str, Path]) -> None:
    world["data"].mkdir()
    world["data"].chmod(0o500)
    try:
        result = invoke("tiny", "--mirror", str(world["mirror"]), "--data-dir", str(world["data"]))
        assert_clean_failure(result, 2, world["data"], "tiny", "is not writable")
    finally:
        world["data"].chmod(0o700)


def test_a_failure_while_writing_leaves_nothing(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import seqbench.data.prepare as module

    def half_write(dataset: Any, directory: Path) -> None:
        (directory / "train.parquet").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "save_prepared", half_write)
    result = invoke("tiny", "--mirror", str(world["mirror"]), "--data-dir", str(world["data"]))
    assert_clean_failure(result, 1, world["data"], "tiny", "writing", "No space left on device")


def test_existing_foreign_folder_is_not_overwritten(world: dict[str, Path]) -> None:
    (world["data"] / "tiny").mkdir(parents=True)
    (world["data"] / "tiny" / "mine.txt").write_text("keep me")
    result = invoke("tiny", "--mirror", str(world["mirror"]), "--data-dir", str(world["data"]))
    assert result.exit_code == 2 and "exists but is not a prepared data set" in result.stderr
    assert (world["data"] / "tiny" / "mine.txt").read_text() == "keep me"


def test_no_names_is_a_usage_error(world: dict[str, Path]) -> None:
    result = invoke("--data-dir", str(world["data"]))
    assert result.exit_code == 2 and "--list" in result.stderr


# --- synthetic and ensure_prepared ------------------------------------------------------------


def test_synthetic_with_size_parameters(tmp_path: Path) -> None:
    args = ("synthetic", "--data-dir", str(tmp_path), "--set", "users=300", "--set", "items=80", "--set", "length=12", "--json")
    first = json.loads(invoke(*args).stdout)["datasets"][0]
    assert first["users"] == 300 and first["items"] <= 80 and first["status"] == "prepared"
    assert json.loads(invoke(*args).stdout)["datasets"][0]["status"] == "already prepared"
    resized = json.loads(invoke("synthetic", "--data-dir", str(tmp_path), "--set", "users=200", "--set", "items=80",
                                "--set", "length=12", "--json").stdout)["datasets"][0]
    assert resized["users"] == 200 and resized["status"] == "prepared"
    meta = load_prepared("synthetic", tmp_path).meta
    assert meta["synthetic"] == {"users": 200, "items": 80, "length": 12, "seed": 0, "catalog": "occurring"} and meta["sources"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["synthetic", "--set", "colour=red"], "unknown synthetic parameter 'colour'"),
        (["synthetic", "--set", "users=many"], "users='many' is not a valid int"),
        (["synthetic", "--set", "users"], "--set expects key=value"),
        (["synthetic", "--set", "items=3"], "synthetic needs users >= 1, items >= 8"),
        (["lastfm", "--set", "users=5"], "takes no --set parameters"),
    ],
)
def test_bad_set_values(tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke(*args, "--data-dir", str(tmp_path))
    assert_clean_failure(result, 2, tmp_path, args[0], message)


def test_ensure_prepared_makes_synthetic_and_names_the_command_for_others(tmp_path: Path) -> None:
    ensure_prepared("synthetic", tmp_path)
    dataset = load_prepared("synthetic", tmp_path)
    assert dataset.num_items > 0 and len(dataset.test) == 2000 and dataset.item_attributes is not None
    with pytest.raises(InputError, match="run `seqbench prepare beauty`"):
        ensure_prepared("beauty", tmp_path)
    assert not is_prepared("beauty", tmp_path)
    with pytest.raises(InputError, match="unknown data set"):
        ensure_prepared("nope", tmp_path)


def test_padding_is_never_an_item(tmp_path: Path) -> None:
    prepare("synthetic", tmp_path, params={"users": "100", "items": "40", "length": "8"})
    dataset = load_prepared("synthetic", tmp_path)
    for values in (dataset.train.values, dataset.valid.targets, dataset.test.targets, dataset.test.histories.values):
        assert values.min() >= 1 and values.max() <= dataset.num_items
    assert np.all(dataset.item_counts()[0] == 0)
