"""`seqbench compare` end to end on a tiny data set: grid, resume, interruption, formats, figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.storage.store import RunStore

runner = CliRunner()
GRID = ["--datasets", "toy", "--models", "gru4rec,sasrec", "--losses", "bce,ce,cce", "--seeds", "0", "--epochs", "2", "--set", "max_len=10", "--set", "batch_size=64"]


def invoke(args: list[str], data: Path, results: Path):
    return runner.invoke(app, ["compare", *args, "--data-dir", str(data), "--results", str(results)])


def test_grid_trains_once_and_tables_equal_the_stored_metrics(toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "r"
    first = invoke([*GRID, "--json", "--table", "all"], toy_data, results)
    assert first.exit_code == 0, first.output
    document = json.loads(first.stdout)
    stored = RunStore(results).table()
    assert len(stored) == 6 and set(stored["status"]) == {"completed"}
    grid = document["tables"]["grid"]
    cells = [row for row in grid if row["loss"] in {"bce", "ce", "cce"}]
    assert len(cells) == 6 * 2 * 3  # metrics x models x losses
    assert len([row for row in grid if row["loss"] not in {"bce", "ce", "cce"}]) == 6 * 2  # one Improve. per group
    by_run = stored.set_index(["dataset", "model", "loss"])
    for cell in cells:
        assert cell["mean"] == pytest.approx(by_run.loc[(cell["dataset"], cell["model"], cell["loss"]), f"test_{cell['metric']}"])
    created = sorted(stored["created_at"])
    again = invoke([*GRID, "--json"], toy_data, results)
    assert again.exit_code == 0
    assert sorted(RunStore(results).table()["created_at"]) == created  # nothing was trained again


def test_an_interrupted_grid_resumes_without_duplicates(toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import seqbench.training.trainer as trainer

    original = trainer.Trainer.fit

    def broken_for_ce(self: trainer.Trainer, progress: object = None, resume: object = None) -> None:
        if self.config.loss == "ce":
            raise ValueError("simulated crash in the middle of a run")
        original(self, progress, resume)

    monkeypatch.setattr(trainer.Trainer, "fit", broken_for_ce)
    monkeypatch.setattr("seqbench.execution.processes.available_cores", lambda: 1)  # in-process, where the patch applies
    results = tmp_path / "r"
    failing = invoke([*GRID, "--quiet"], toy_data, results)
    assert failing.exit_code == 1  # runs of the grid failed: scripts see it (issue: it was 0)
    assert "2 of 6 runs of the grid did not complete" in failing.output and "simulated crash" in failing.output
    table = RunStore(results).table()
    assert sorted(table["status"]) == ["completed"] * 4 + ["failed"] * 2
    monkeypatch.setattr(trainer.Trainer, "fit", original)
    assert invoke([*GRID, "--quiet"], toy_data, results).exit_code == 1  # still failed in the store
    assert invoke([*GRID, "--quiet", "--allow-failed"], toy_data, results).exit_code == 0
    assert sorted(RunStore(results).table()["status"]) == ["completed"] * 4 + ["failed"] * 2  # not retried
    assert invoke([*GRID, "--quiet", "--retry-failed"], toy_data, results).exit_code == 0
    table = RunStore(results).table()
    assert len(table) == 6 and table["run_id"].is_unique and set(table["status"]) == {"completed"}


def test_every_format_renders_and_figures_are_png(toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "r"
    small = ["--datasets", "toy", "--models", "gru4rec", "--losses", "bce,cce", "--seeds", "0", "--epochs", "2", "--set", "max_len=10"]
    assert invoke([*small, "--quiet"], toy_data, results).exit_code == 0
    outputs = {fmt: invoke([*small, "--no-train", "--table", "all", "--format", fmt], toy_data, results) for fmt in ("text", "markdown", "latex", "csv")}
    assert all(result.exit_code == 0 for result in outputs.values()), {k: v.output for k, v in outputs.items()}
    assert "\\textbf" in outputs["latex"].stdout and "**" in outputs["markdown"].stdout
    assert "," in outputs["csv"].stdout.splitlines()[0]
    plots = tmp_path / "plots"
    result = invoke([*small, "--no-train", "--plots", str(plots)], toy_data, results)
    assert result.exit_code == 0, result.output
    pngs = list(plots.glob("*.png"))
    assert len(pngs) >= 3 and list(plots.glob("*.pdf"))
    for png in pngs:
        content = png.read_bytes()
        assert content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) > 5000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "gru4rec,nope"], "unknown model 'nope'"),
        (["--losses", "cce,zzz"], "unknown loss 'zzz'"),
        (["--datasets", "nowhere"], "unknown dataset 'nowhere'"),
        (["--losses", ","], "loss list is empty"),
        (["--format", "pdf"], "unknown format 'pdf'"),
        (["--no-train"], "no completed runs"),
        (["--test", "ttest"], "unknown test 'ttest'"),
        (["--adjust", "bonferroni"], "unknown adjustment 'bonferroni'"),
        (["--runs", "all"], "unknown run selection 'all'"),
        (["--alpha", "1.5"], "--alpha must be between 0 and 1"),
        (["--preset", "li2099"], "unknown preset 'li2099'"),
        (["--set", "selection_metric=NDCG@30"], "unknown selection_metric (with ks=[5, 10, 20]) 'NDCG@30'"),
    ],
)
def test_bad_compare_input_exits_2(toy_data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke(["--datasets", "toy", *args], toy_data, tmp_path / "r")
    assert result.exit_code == 2, result.output
    assert message in result.output
