"""Your own interactions as a data set: `prepare --from FILE --name NAME` (CSV, Parquet) and local
paths in a registry YAML, through the real entry point; then `compare --datasets NAME` runs on it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqbench.data.local import TableRequest, prepare_table
from seqbench.errors import InputError


def seqbench(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "seqbench", *args], cwd=cwd, capture_output=True, text=True,
                          env=os.environ | (env or {}), timeout=600)


def interactions(users: int = 120, items: int = 40) -> pd.DataFrame:
    """Users walk through the catalogue in order (a learnable next item), with a rating per row."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(users):
        start = int(rng.integers(0, items))
        for step in range(int(rng.integers(6, 15))):
            rows.append((f"u{user}", f"sku-{(start + step) % items}", 1_600_000_000 + 3600 * step + user, int(rng.integers(1, 6))))
    return pd.DataFrame(rows, columns=["customer", "product", "when", "stars"])


def test_a_csv_becomes_a_data_set_in_one_command_and_compare_runs_on_it(tmp_path: Path) -> None:
    interactions().to_csv(tmp_path / "log.csv", index=False)
    made = seqbench("prepare", "--from", "log.csv", "--name", "mydata", "--user-col", "customer", "--item-col", "product",
                    "--time-col", "when", "--json", "--quiet", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    row = json.loads(made.stdout)["datasets"][0]
    assert (row["name"], row["users"], row["items"], row["status"]) == ("mydata", 120, 40, "prepared")
    meta = json.loads((tmp_path / "data" / "mydata" / "meta.json").read_text())
    source = meta["sources"][0]
    assert source["origin"] == "local" and source["format"] == "table" and len(source["sha256"]) == 64
    assert source["columns"] == {"user": "customer", "item": "product", "timestamp": "when"}

    run = seqbench("compare", "--datasets", "mydata", "--models", "gru4rec", "--losses", "bce,cce", "--seeds", "0",
                   "--epochs", "1", "--set", "batch_size=32", "--set", "max_len=10", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Mydata" in run.stdout or "mydata" in run.stdout

    # Asked again with another recipe: refused, not "already prepared" with the old one.
    again = seqbench("prepare", "--from", "log.csv", "--name", "mydata", "--user-col", "customer", "--item-col", "product",
                     "--time-col", "when", "--user-k", "8", cwd=tmp_path)
    assert again.returncode == 2 and "different recipe" in again.stderr and "--force" in again.stderr


def test_a_parquet_with_dates_and_a_rating_threshold(tmp_path: Path) -> None:
    frame = interactions()
    frame["when"] = pd.to_datetime(frame["when"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
    frame.to_parquet(tmp_path / "log.parquet")
    made = seqbench("prepare", "--from", "log.parquet", "--name", "rated", "--user-col", "customer", "--item-col", "product",
                    "--time-col", "when", "--rating-col", "stars", "--min-rating", "4", "--user-k", "2", "--item-k", "2",
                    "--json", "--quiet", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    meta = json.loads((tmp_path / "data" / "rated" / "meta.json").read_text())
    kept = int((frame["stars"] >= 4).sum())
    assert meta["filtering"]["rows_below_min_rating"] == len(frame) - kept
    assert meta["recipe"]["min_rating"] == 4.0


def test_a_bad_request_is_one_line_and_exit_2_through_the_command_line(tmp_path: Path) -> None:
    interactions().to_csv(tmp_path / "log.csv", index=False)
    done = seqbench("prepare", "--from", "log.csv", "--name", "x", "--user-col", "nobody", "--item-col", "product",
                    "--time-col", "when", "--quiet", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "lacks column(s) nobody (it has: customer, product, when, stars)" in done.stderr
    assert not (tmp_path / "data" / "x").exists()


@pytest.mark.parametrize("fields, words", [
    ({"name": None}, "--from needs --name"),
    ({"name": "beauty"}, "is a registered data set"),
    ({"name": "../escape"}, "data set"),
    ({"min_rating": 3.0}, "--min-rating needs --rating-col"),
    ({"split": "sideways"}, "split 'sideways' is not one of"),
    ({"item": "customer"}, "two roles name the same column"),
])
def test_bad_requests_are_input_errors_before_anything_is_written(tmp_path: Path, fields: dict[str, object], words: str) -> None:
    interactions().to_csv(tmp_path / "log.csv", index=False)
    request = {"path": tmp_path / "log.csv", "name": "x", "user": "customer", "item": "product", "timestamp": "when"} | fields
    with pytest.raises(InputError, match=re.escape(words)):
        prepare_table(TableRequest(**request), tmp_path / "data")  # type: ignore[arg-type]
    assert not (tmp_path / "data").exists()


def test_a_registry_yaml_names_a_local_file_by_a_path_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    interactions().to_csv(tmp_path / "files" / "log.csv", index=False)
    (tmp_path / "registry.yaml").write_text(
        "datasets:\n  shop:\n    description: my shop\n    files:\n"
        "      - {role: interactions, format: table, url: files/log.csv, sha256: null, mirror_folder: local,\n"
        "         columns: {user: customer, item: product, timestamp: when}}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = seqbench("prepare", "shop", "--json", "--quiet", cwd=elsewhere, env={"SEQBENCH_DATASETS": str(tmp_path / "registry.yaml")})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["datasets"][0]["users"] == 120
