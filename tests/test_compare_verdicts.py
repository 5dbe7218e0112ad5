"""`compare` verdicts through the real entry point: exact run selection, seeds, settings, presets, report."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.reporting.markdown_report import linked_files
from seqbench.services.compare import grid_names
from seqbench.storage.store import RunStore

runner = CliRunner()
SMALL = ["--datasets", "toy", "--models", "gru4rec", "--losses", "bce,cce", "--set", "max_len=10", "--set", "batch_size=64"]


def cli(args: list[str], data: Path, results: Path):
    return runner.invoke(app, [*args, "--data-dir", str(data), "--results", str(results)])


def grid_json(args: list[str], data: Path, results: Path) -> dict:
    result = cli(["compare", *args, "--json"], data, results)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_an_ad_hoc_run_of_another_config_never_enters_the_grid(toy_data: Path, tmp_path: Path) -> None:
    """The reported case: a 1-epoch `train` of gru4rec/bce leaked into the 5-epoch grid's table."""
    results = tmp_path / "r"
    grid = [*SMALL, "--seeds", "0", "--epochs", "3"]
    before = grid_json(grid, toy_data, results)
    adhoc = cli(["train", "--dataset", "toy", "--model", "gru4rec", "--loss", "bce", "--epochs", "1",
                 "--set", "max_len=10", "--set", "batch_size=64", "--quiet"], toy_data, results)
    assert adhoc.exit_code == 0, adhoc.output
    stored = RunStore(results).table()
    assert len(stored) == 3  # the ad-hoc run is newer than the grid's bce run of the same seed
    after = grid_json([*grid, "--no-train"], toy_data, results)
    trained = grid_json(grid, toy_data, results)  # with training: everything skipped, same tables
    for document in (after, trained):
        assert document["tables"]["grid"] == before["tables"]["grid"]
        assert {row["run_id"] for row in document["runs"]} == {row["run_id"] for row in before["runs"]}
    # Asked for explicitly, the stored runs of other configs appear as a setting of their own.
    everything = grid_json([*grid, "--no-train", "--runs", "stored"], toy_data, results)
    settings = {row["setting"] for row in everything["tables"]["grid"] if row["loss"] == "bce"}
    assert settings == {"epochs=1", "epochs=3"}


def test_seeds_default_to_three_on_real_data_and_one_on_synthetic(toy_data: Path) -> None:
    assert grid_names("toy", "gru4rec", "bce", None, toy_data)["seeds"] == [0, 1, 2]
    assert grid_names("synthetic", "gru4rec", "bce", None, toy_data)["seeds"] == [0]
    assert grid_names("toy", "gru4rec", "bce", "4,5", toy_data)["seeds"] == [4, 5]


def test_seeds_give_intervals_verdicts_and_a_sweep_gives_a_sensitivity_table(toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "r"
    args = [*SMALL, "--seeds", "0,1", "--epochs", "2", "--set", "patience=1,2", "--table", "grid"]
    document = grid_json(args, toy_data, results)
    stored = RunStore(results).table()
    assert len(stored) == 2 * 2 * 2 and stored["run_id"].is_unique  # losses x seeds x patience values
    cells = [row for row in document["tables"]["grid"] if row["loss"] in ("bce", "cce")]
    assert {row["setting"] for row in cells} == {"patience=1", "patience=2"}
    assert all(row["n_seeds"] == 2 and row["interval"] == "seeds" and row["low"] <= row["mean"] <= row["high"] for row in cells)
    verdicts = document["verdicts"]
    assert len(verdicts) == 2 and {v["setting"] for v in verdicts} == {"patience=1", "patience=2"}
    for verdict in verdicts:
        assert verdict["covers"] == "seeds+users" and verdict["n_proposed"] == 2
        assert verdict["verdict"] in ("cce > bce", "cce < bce", "no detectable difference")
        assert verdict["p_adjusted"] >= verdict["p_value"]
    sensitivity = document["tables"]["sensitivity"]
    assert len(sensitivity) == 1 and sensitivity[0]["verdict holds"] in ("yes", "no")
    text = cli(["compare", *args, "--no-train"], toy_data, results)
    assert text.exit_code == 0
    assert "Verdicts (NDCG@10; proposed versus each baseline; p adjusted by Holm over these 2 verdicts" in text.stdout and "toy [patience=2] / GRU4Rec NDCG@10" in text.stdout
    assert "2 seeds per cell" in text.stdout and "Holm" in text.stdout


def test_a_paper_preset_sets_its_fields_records_itself_and_yields_to_explicit_settings(toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "r"
    result = cli(["train", "--dataset", "toy", "--model", "sasrec", "--loss", "bce", "--epochs", "1", "--set", "max_len=10",
                  "--preset", "li2023", "--set", "patience=3", "--json"], toy_data, results)
    assert result.exit_code == 0, result.output
    row = RunStore(results).table().iloc[0]
    config = json.loads(row["config_json"])
    assert config["paper_preset"] == "li2023" and config["selection_metric"] == "NDCG@20"
    assert config["patience"] == 3 and config["epochs"] == 1  # explicit values win over the preset
    assert config["model_params"]["dropout"] == 0.5 and row["paper_preset"] == "li2023"


def test_the_report_is_self_contained(toy_data: Path, tmp_path: Path) -> None:
    results, report = tmp_path / "r", tmp_path / "report"
    result = cli(["compare", *SMALL, "--seeds", "0", "--epochs", "2", "--table", "all", "--report", str(report), "--quiet"],
                 toy_data, results)
    assert result.exit_code == 0, result.output
    text = (report / "report.md").read_text()
    for heading in ("## Improvement grid", "### Verdicts", "## Reproduced versus published", "## Figures", "## Runs", "## Protocol"):
        assert heading in text
    links = linked_files(report / "report.md")
    assert links and all(path.is_file() for path in links)
    assert all(path.resolve().is_relative_to(report.resolve()) for path in links)
    assert not list(report.glob(".*tmp*"))
    runs = RunStore(results).table()
    assert all(run_id in text for run_id in runs["run_id"])


def test_verdict_words_agree_with_the_sign_of_their_number() -> None:
    """A proposed loss significantly worse reads "cce < sce: -6.9% [...]", never "sce > cce: -6.9%"."""
    import pandas as pd

    from seqbench.reporting.verdicts import COLUMNS, _short, verdict_lines

    rows = []
    for improve, direction in ((-0.0689, -1), (0.051, 1), (0.004, 0)):
        row = dict.fromkeys(COLUMNS, 0) | {"dataset": "lastfm", "setting": "", "model": "sasrec", "metric": "NDCG@10", "proposed": "cce",
                                           "baseline": "sce", "improve": improve, "improve_low": improve - 0.01, "improve_high": improve + 0.01,
                                           "p_adjusted": 0.001, "covers": "seeds+users", "n_proposed": 3, "n_baseline": 3, "direction": direction}
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["verdict"] = [_short(row) for row in frame.itertuples()]
    worse, better, same = verdict_lines(frame, "holm")
    assert "cce < sce: -6.89%" in worse and "sce > cce" not in worse
    assert "cce > sce: +5.10%" in better
    assert "no detectable difference" in same


def test_a_paper_preset_compares_with_that_papers_table_unless_told_otherwise(toy_data: Path, tmp_path: Path) -> None:
    """`--preset xu2024` used to be checked against the CCE paper's Table 2 (the default source)."""
    results = tmp_path / "r"
    grid = ["compare", "--datasets", "toy", "--models", "sasrec", "--losses", "cce", "--seeds", "0", "--epochs", "1",
            "--set", "max_len=10", "--preset", "xu2024", "--table", "reference"]
    own = cli(grid, toy_data, results)
    assert own.exit_code == 0, own.output
    assert "xu2024_table5" in own.stdout and "li2023_cce_table2" not in own.stdout
    told = cli([*grid, "--no-train", "--source", "li2023_cce_table2"], toy_data, results)
    assert told.exit_code == 0 and "li2023_cce_table2" in told.stdout and "xu2024_table5" not in told.stdout
    plain = cli([argument for argument in grid if argument not in ("--preset", "xu2024")], toy_data, results)  # trains the no-preset run
    assert plain.exit_code == 0 and "li2023_cce_table2" in plain.stdout and "xu2024_table5" not in plain.stdout
