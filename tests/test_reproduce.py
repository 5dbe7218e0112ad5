"""``seqbench reproduce``: the reproduction gate through the real entry point (stdout and stderr as
pipes) on tiny data with a published table of its own: pass, fail, exit codes, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GRID = ["--datasets", "toy", "--models", "gru4rec", "--losses", "cce", "--seeds", "0,1", "--epochs", "1",
        "--set", "max_len=10", "--set", "batch_size=64", "--set", "threads=1"]


def piped(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "seqbench", *args], capture_output=True, text=True, env=env, timeout=600)


def published_table(path: Path, ndcg10: float, hr10: float) -> Path:
    path.write_text("source,dataset,model,loss,metric,value\n"
                    f"li2023_cce_table2,toy,GRU4Rec,cce,NDCG@10,{ndcg10}\n"
                    f"li2023_cce_table2,toy,GRU4Rec,cce,HR@10,{hr10}\n"
                    "li2023_cce_table2,toy,SASRec,cce,NDCG@10,0.5\n")  # another model: not this grid's cell
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, float]]:
    """The grid trained once by the gate itself (under the li2023 preset); its reproduced means."""
    from conftest import write_toy_dataset

    root = tmp_path_factory.mktemp("reproduce")
    data, results = root / "data", root / "results"
    write_toy_dataset(data)
    far = published_table(root / "far.csv", 2.0, 2.0)
    first = piped("reproduce", "li2023", *GRID, "--published", str(far), "--data-dir", str(data), "--results", str(results), "--json")
    assert first.returncode == 1, first.stderr  # trained, then failed: 2.0 is nowhere near
    document = json.loads(first.stdout)
    means = {cell["metric"]: cell["reproduced"] for cell in document["cells"]}
    return data, results, means


def test_a_grid_that_misses_the_published_numbers_fails_with_exit_1(trained: tuple[Path, Path, dict[str, float]], tmp_path: Path) -> None:
    data, results, means = trained
    far = published_table(tmp_path / "far.csv", 2.0, 2.0)  # beyond any metric, and any 2-seed CI here
    gate = piped("reproduce", "li2023", *GRID, "--published", str(far), "--data-dir", str(data), "--results", str(results), "--no-train", "--json")
    assert gate.returncode == 1
    document = json.loads(gate.stdout)
    assert document["kind"] == "reproduction" and document["passed"] is False and document["failed"] == 2
    assert {cell["metric"] for cell in document["cells"]} == {"NDCG@10", "HR@10"}  # only this grid's published cells
    for cell in document["cells"]:
        assert cell["n_seeds"] == 2 and cell["preset"] == "li2023"
        assert cell["inside_ci"] is False and cell["inside_tolerance"] is False and cell["passed"] is False
    assert "reproduction failed: 2 of 2 cells" in gate.stderr
    text = piped("reproduce", "li2023", *GRID, "--published", str(far), "--data-dir", str(data), "--results", str(results), "--no-train")
    assert text.returncode == 1 and "FAIL" in text.stdout and "Not set by `--preset li2023`" in text.stdout


def test_a_grid_on_the_published_numbers_passes_with_exit_0(trained: tuple[Path, Path, dict[str, float]], tmp_path: Path) -> None:
    data, results, means = trained
    near = published_table(tmp_path / "near.csv", round(means["NDCG@10"] * 1.03, 6), round(means["HR@10"], 6))
    gate = piped("reproduce", "li2023", *GRID, "--published", str(near), "--data-dir", str(data), "--results", str(results), "--no-train", "--json")
    assert gate.returncode == 0, gate.stderr
    document = json.loads(gate.stdout)
    assert document["passed"] is True and document["failed"] == 0
    ndcg = next(cell for cell in document["cells"] if cell["metric"] == "NDCG@10")
    assert ndcg["inside_tolerance"] is True and ndcg["rel_diff"] == pytest.approx(1 / 1.03 - 1, abs=1e-4)
    assert "PASS" in piped("reproduce", "li2023", *GRID, "--published", str(near), "--data-dir", str(data), "--results", str(results),
                           "--no-train").stdout


def test_nothing_reproduced_is_a_failure_not_an_error(tmp_path: Path, toy_data: Path) -> None:
    far = published_table(tmp_path / "far.csv", 0.1, 0.2)
    gate = piped("reproduce", "li2023", *GRID, "--published", str(far), "--data-dir", str(toy_data), "--results", str(tmp_path / "r"),
                 "--no-train", "--json")
    assert gate.returncode == 1 and json.loads(gate.stdout)["failed"] == 2
    text = piped("reproduce", "li2023", *GRID, "--published", str(far), "--data-dir", str(toy_data), "--results", str(tmp_path / "r"),
                 "--no-train")
    assert text.returncode == 1 and text.stdout.count("FAIL (no run)") == 2 and "2 without a completed run" in text.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["xu2099"], "unknown paper 'xu2099'"),
    (["li2023", "--tolerance", "5"], "--tolerance must be a fraction"),
    (["li2023", "--published", "nosuch.csv"], "--published nosuch.csv: no such file"),
    (["li2023", "--datasets", "synthetic"], "publishes no number for these data sets"),  # refused before training
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path, toy_data: Path) -> None:
    gate = piped("reproduce", *args, "--data-dir", str(toy_data), "--results", str(tmp_path / "r"))
    assert gate.returncode == 2 and message in gate.stderr and len(gate.stderr.strip().splitlines()) == 1, gate.stderr
    assert not (tmp_path / "r" / "runs").exists()
