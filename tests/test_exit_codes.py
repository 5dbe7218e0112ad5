"""The exit-code contract of ``compare`` as scripts see it (stdout and stderr as pipes): 0 when
every run of the grid completed, 1 when some failed (listed on stderr and in the JSON document,
also with --quiet), 2 on bad input before any training; --allow-failed exits 0 anyway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRID = ["compare", "--datasets", "toy", "--models", "gru4rec", "--losses", "bce,cce", "--seeds", "0", "--epochs", "1",
        "--set", "max_len=10", "--set", "threads=1", "--jobs", "1"]


def compare_with_a_broken_loss(args: list[str], broken: str) -> subprocess.CompletedProcess[str]:
    """``seqbench.cli.main`` (the console script's function) in a fresh interpreter whose trainer
    raises for ``broken`` runs: a loss that fails in every run."""
    driver = textwrap.dedent(f"""
        import sys
        import seqbench.training.trainer as trainer
        original = trainer.Trainer.fit
        def fit(self, progress=None, resume=None):
            if self.config.loss == {broken!r}:
                raise ValueError("the loss exploded")
            return original(self, progress, resume)
        trainer.Trainer.fit = fit
        from seqbench.cli import main
        sys.argv = ["seqbench", *{args!r}]
        main()
    """)
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, env=env, timeout=600)


def test_failed_runs_make_compare_exit_1_and_are_listed(toy_data: Path, tmp_path: Path) -> None:
    where = ["--data-dir", str(toy_data), "--results", str(tmp_path / "r")]
    quiet = compare_with_a_broken_loss([*GRID, *where, "--quiet"], "cce")
    assert quiet.returncode == 1, quiet.stderr
    assert "1 of 2 runs of the grid did not complete: toy/gru4rec/cce/seed0" in quiet.stderr and "the loss exploded" in quiet.stderr
    as_json = compare_with_a_broken_loss([*GRID, *where, "--json"], "cce")
    assert as_json.returncode == 1
    document = json.loads(as_json.stdout)
    assert [run["label"].split(" ")[0] for run in document["incomplete"]] == ["toy/gru4rec/cce/seed0"]
    assert document["incomplete"][0]["status"] == "failed"
    allowed = compare_with_a_broken_loss([*GRID, *where, "--quiet", "--allow-failed"], "cce")
    assert allowed.returncode == 0 and "did not complete" in allowed.stderr


def test_a_grid_whose_every_run_fails_names_the_failures_not_a_missing_training(toy_data: Path, tmp_path: Path) -> None:
    where = ["--data-dir", str(toy_data), "--results", str(tmp_path / "r"), "--losses", "cce", "--quiet"]
    failed = compare_with_a_broken_loss([*GRID, *where], "cce")
    assert failed.returncode == 1
    assert "did not complete" in failed.stderr and "the loss exploded" in failed.stderr
    assert "without --no-train" not in failed.stderr  # the old, wrong advice


def test_a_grid_that_completes_exits_0(toy_data: Path, tmp_path: Path) -> None:
    done = compare_with_a_broken_loss([*GRID, "--data-dir", str(toy_data), "--results", str(tmp_path / "r"), "--quiet"], "none")
    assert done.returncode == 0, done.stderr and "did not complete" not in done.stderr


def test_a_proposed_loss_outside_the_grid_is_refused_before_training(toy_data: Path, tmp_path: Path) -> None:
    args = [*GRID, "--losses", "bce,ce", "--proposed", "cce", "--data-dir", str(toy_data), "--results", str(tmp_path / "r")]
    refused = compare_with_a_broken_loss(args, "none")
    assert refused.returncode == 2 and "--proposed cce is not among --losses bce,ce" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "r" / "runs").exists()


def test_without_cce_in_the_grid_the_proposed_loss_is_chosen_and_said(toy_data: Path, tmp_path: Path) -> None:
    args = [*GRID, "--losses", "bce,ce", "--data-dir", str(toy_data), "--results", str(tmp_path / "r"), "--quiet", "--json"]
    done = compare_with_a_broken_loss(args, "none")
    assert done.returncode == 0, done.stderr
    assert "Improve. compares ce (the last of --losses; cce is not among them)" in done.stderr
    improvements = json.loads(done.stdout)["tables"]["grid"]
    assert {row["proposed"] for row in improvements if row.get("proposed")} == {"ce"}


def test_output_into_a_closed_pipe_ends_quietly_with_0(tmp_path: Path) -> None:
    """``seqbench prepare --list | head -0``: the reader is gone before seqbench writes."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    for args in (["prepare", "--list", "--data-dir", str(tmp_path)], ["--help"]):
        process = subprocess.Popen([sys.executable, "-m", "seqbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        process.stdout.close()  # type: ignore[union-attr]
        stderr = process.stderr.read().decode()  # type: ignore[union-attr]
        assert process.wait(timeout=120) == 0 and stderr == "", (args, stderr)


def test_tune_json_is_a_document_of_its_kind(toy_data: Path, tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("optuna")
    args = ["tune", "--dataset", "toy", "--model", "gru4rec", "--losses", "bce", "--trials", "1", "--epochs", "1",
            "--set", "max_len=10", "--set", "threads=1", "--data-dir", str(toy_data), "--results", str(tmp_path / "r"), "--json"]
    done = subprocess.run([sys.executable, "-m", "seqbench", *args], capture_output=True, text=True, timeout=600,
                          env=os.environ | {"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["kind"] == "tune" and document["schema_version"] == 1 and "bce" in document["studies"]


def test_a_diverging_run_is_stored_failed_with_its_last_finite_checkpoint(toy_data: Path, tmp_path: Path) -> None:
    """lr=1e4 drives the loss to ~1e9 in epoch 2: stored 'failed' (it was 'completed'), exit 1."""
    from seqbench.storage.store import RunStore

    results = tmp_path / "r"
    args = ["train", "--dataset", "toy", "--model", "sasrec", "--loss", "cce", "--epochs", "5", "--set", "lr=1e4", "--set", "max_len=10",
            "--set", "threads=1", "--data-dir", str(toy_data), "--results", str(results), "--quiet"]
    done = subprocess.run([sys.executable, "-m", "seqbench", *args], capture_output=True, text=True, timeout=600,
                          env=os.environ | {"PYTHONPATH": str(REPO)})
    assert done.returncode == 1 and "diverged at epoch" in done.stderr, done.stderr
    (run_id,) = RunStore(results).table()["run_id"]
    row = RunStore(results).row(run_id)
    assert row["status"] == "failed" and str(row["reason"]).startswith("diverged at epoch")
    assert RunStore(results).checkpoint(run_id)  # the best weights before it diverged
