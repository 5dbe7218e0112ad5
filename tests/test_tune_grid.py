"""`seqbench compare --tune`: the tuned setting beside the default one, equal budgets, the chosen
hyper-parameters, resumable and deterministic, validation-only selection; spaces capped at N."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.configure import check_catalogue, make_config
from seqbench.losses.registry import LOSSES, make_params
from seqbench.models.registry import MODELS
from seqbench.services.compare import grid_overrides
from seqbench.space import cap_at_catalogue, integer
from seqbench.storage.layout import ResultsLayout
from seqbench.storage.store import RunStore
from seqbench.training.trainer import Trainer
from seqbench.tuning import studies as tuning

runner = CliRunner()
optuna = pytest.importorskip("optuna")
SETS = ["max_len=10", "batch_size=32", "model.hidden_size=16"]
# --jobs 1: the default grid trains in this process (no worker start-up; monkeypatches apply).
GRID = ["--datasets", "toy", "--models", "sasrec", "--losses", "bce,cce", "--seeds", "0", "--epochs", "2", "--jobs", "1",
        *[part for pair in (("--set", s) for s in SETS) for part in pair]]
TOY_ITEMS = 40  # tests/conftest.py: write_toy_dataset


def invoke(args: list[str], data: Path, results: Path):
    return runner.invoke(app, ["compare", *args, "--data-dir", str(data), "--results", str(results)])


def compare_json(args: list[str], data: Path, results: Path) -> dict:
    result = invoke([*args, "--json"], data, results)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def chosen_overrides(results: Path, losses: list[str], seeds: list[int]) -> dict[str, dict]:
    names = {"datasets": ["toy"], "models": ["sasrec"], "losses": losses, "seeds": seeds}
    return tuning.tuned_configs(results, "toy", "sasrec", losses, seed=seeds[0], overrides=grid_overrides(names, 2, None, SETS), num_items=TOY_ITEMS)


def test_compare_tune_shows_tuned_beside_default_with_verdicts_budget_and_choices(toy_data: Path, tmp_path: Path) -> None:
    results, report = tmp_path / "r", tmp_path / "report"
    document = compare_json([*GRID, "--seeds", "0,1", "--tune", "2", "--report", str(report)], toy_data, results)
    grid = pd.DataFrame(document["tables"]["grid"])
    assert set(grid["setting"]) == {"default", "tuned"}
    assert set(grid.loc[grid["setting"] == "tuned", "loss"]) == {"bce", "cce", "Improve."}  # one column per loss, not per config
    assert {(v["setting"], v["baseline"]) for v in document["verdicts"]} == {("default", "bce"), ("tuned", "bce")}
    store = RunStore(results)
    for loss, overrides in chosen_overrides(results, ["bce", "cce"], [0, 1]).items():
        run_ids = [make_config(None, overrides | {"seed": seed}).run_id("cpu") for seed in (0, 1)]
        assert all(store.row(run_id)["status"] == "completed" for run_id in run_ids)  # retrained with both seeds
        cell = grid[(grid["setting"] == "tuned") & (grid["loss"] == loss) & (grid["metric"] == "NDCG@10")]
        expected = sum(store.row(run_id)["test_NDCG@10"] for run_id in run_ids) / 2
        assert cell["mean"].item() == pytest.approx(expected) and cell["n_seeds"].item() == 2
    budget = pd.DataFrame(document["tables"]["tuning_budget"]).set_index("loss")
    assert budget["trials"].tolist() == [2, 2] and budget["max_epochs"].tolist() == [2, 2]
    assert (budget["completed"] + budget["pruned"] + budget["failed"]).tolist() == [2, 2]
    chosen = pd.DataFrame(document["tables"]["tuning_chosen"]).set_index("loss")
    assert {"lr", "weight_decay", "patience", "valid_NDCG@10"} <= set(chosen.columns)
    assert chosen.loc["bce", "loss.num_negatives"] <= TOY_ITEMS and pd.isna(chosen.loc["cce", "loss.num_negatives"])
    text = (report / "report.md").read_text()
    for heading in ("## Tuning budget per loss", "## Chosen hyper-parameters", "toy [tuned]", "toy [default]",
                    "equal budget, every loss 2 trials x 2 max epochs", "The **tuned** setting is this protocol", "![tune_toy_sasrec](figures/tune_toy_sasrec.png)"):
        assert heading in text
    assert (report / "figures" / "tune_toy_sasrec.png").read_bytes().startswith(b"\x89PNG")


def test_compare_tune_twice_trains_nothing_and_prints_equal_budgets(toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results, plots = tmp_path / "r", tmp_path / "plots"
    first = compare_json([*GRID, "--tune", "2"], toy_data, results)
    created = sorted(RunStore(results).table()["created_at"])

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(Trainer, "fit", no_training)
    text = invoke([*GRID, "--tune", "2", "--plots", str(plots)], toy_data, results)
    assert text.exit_code == 0, text.output
    assert sorted(RunStore(results).table()["created_at"]) == created
    assert "Tuning budget per loss" in text.stdout and "Chosen hyper-parameters per loss" in text.stdout
    assert "SASRec on toy: equal budget, every loss 2 trials x 2 max epochs" in " ".join(text.stdout.split())
    assert (plots / "tune_toy_sasrec.png").is_file() and (plots / "tune_toy_sasrec.pdf").is_file()
    again = compare_json([*GRID, "--tune", "2", "--no-train"], toy_data, results)
    for name in ("grid", "tuning_budget", "tuning_chosen"):
        assert again["tables"][name] == first["tables"][name]
    plan = {T: compare_json([*GRID, "--tune", str(T), "--dry-run"], toy_data, results)["tuning"] for T in (2, 3)}
    assert [(r["trials_stored"], r["trials_to_run"], r["retrain_runs"], r["estimated_seconds"]) for r in plan[2]] == [(2, 0, 0, 0.0)] * 2
    assert [(r["trials_stored"], r["trials_to_run"]) for r in plan[3]] == [(2, 1)] * 2
    assert all(r["estimated_seconds"] > 0 for r in plan[3])  # from the stored runs' seconds per epoch
    fresh = compare_json([*GRID, "--seeds", "0,1", "--tune", "3", "--dry-run"], toy_data, tmp_path / "fresh")
    assert [(r["trials_to_run"], r["retrain_runs"], r["estimated_seconds"]) for r in fresh["tuning"]] == [(3, 1, None)] * 2
    assert not (tmp_path / "fresh").exists() or RunStore(tmp_path / "fresh").table().empty


def test_compare_tune_is_deterministic_and_never_selects_on_test_metrics(toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = compare_json([*GRID, "--tune", "3"], toy_data, tmp_path / "clean")
    same = compare_json([*GRID, "--tune", "3"], toy_data, tmp_path / "same")
    assert same["tables"]["tuning_chosen"] == clean["tables"]["tuning_chosen"]
    assert chosen_overrides(tmp_path / "same", ["bce", "cce"], [0]) == chosen_overrides(tmp_path / "clean", ["bce", "cce"], [0])
    original = Trainer.evaluate

    def reversed_test(self: Trainer, split: str):  # every test metric replaced by 1 - x
        result = original(self, split)
        if split == "test":
            result.metrics = {name: 1.0 - value for name, value in result.metrics.items()}
        return result

    monkeypatch.setattr(Trainer, "evaluate", reversed_test)
    dirty = compare_json([*GRID, "--tune", "3"], toy_data, tmp_path / "dirty")
    cce = make_config(None, chosen_overrides(tmp_path / "clean", ["cce"], [0])["cce"] | {"seed": 0}).run_id("cpu")
    dirty_test, clean_test = (RunStore(tmp_path / name).row(cce)["test_NDCG@10"] for name in ("dirty", "clean"))
    assert dirty_test == pytest.approx(1 - clean_test)  # the stored test metrics did change ...
    assert dirty["tables"]["tuning_chosen"] == clean["tables"]["tuning_chosen"]  # ... the choice did not
    assert chosen_overrides(tmp_path / "dirty", ["bce", "cce"], [0]) == chosen_overrides(tmp_path / "clean", ["bce", "cce"], [0])


@pytest.mark.parametrize(("args", "message"), [
    (["--tune", "0"], "--tune must be >= 1"),
    (["--tune", "2", "--runs", "stored"], "drop --runs stored"),
    (["--tune", "2", "--set", "patience=10,40"], "drop the sweep"),
    (["--tune", "2", "--set", "loss.num_negatives=41", "--losses", "bce"], "more than the 40 items"),
])
def test_bad_tune_input_exits_2_before_training(toy_data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke([*GRID, *args], toy_data, tmp_path / "r")
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "runs").exists() or RunStore(tmp_path / "r").table().empty


# --- spaces capped at the catalogue ------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSSES.names())
@pytest.mark.parametrize("num_items", [3, TOY_ITEMS, 100_000])
def test_every_loss_space_capped_at_the_catalogue_gives_valid_runs_on_it(loss: str, num_items: int) -> None:
    for model in MODELS:
        for space in tuning.applicable_space(model, loss, num_items):
            for value in space.points():
                config = make_config(None, {"dataset": "toy", "model": model, "loss": loss, space.name: value})
                check_catalogue(config, num_items)  # e.g. never more negatives than items
                make_params(loss, config.loss_params, num_items)
                if space.scope()[1] in ("num_negatives", "b_y"):
                    assert value <= num_items


def test_the_cap_matters_and_keeps_uncapped_spaces_and_study_ids() -> None:
    declared = {s.name: s for s in tuning.applicable_space("sasrec", "bce")}["loss.num_negatives"]
    too_many = make_config(None, {"dataset": "toy", "model": "sasrec", "loss": "bce", "loss.num_negatives": int(declared.high)})
    with pytest.raises(Exception, match="more than the 40 items"):
        check_catalogue(too_many, TOY_ITEMS)  # why the cap: the declared range would be refused on toy
    capped = cap_at_catalogue(declared, TOY_ITEMS)
    assert (capped.low, capped.high, capped.log, capped.integer) == (declared.low, TOY_ITEMS, True, True)
    assert cap_at_catalogue(integer("loss.num_negatives", 16, 512), 8).choices == (8,)  # collapses to N
    assert cap_at_catalogue(declared, 10_000) is declared
    plain = tuning.plan_study("toy", "sasrec", "cce", 0, {}, tuning.TuneSettings())
    assert tuning.plan_study("toy", "sasrec", "cce", 0, {}, tuning.TuneSettings(), num_items=3).study_id == plain.study_id
    assert tuning.plan_study("toy", "sasrec", "bce", 0, {}, tuning.TuneSettings(), num_items=TOY_ITEMS).study_id != \
        tuning.plan_study("toy", "sasrec", "bce", 0, {}, tuning.TuneSettings()).study_id


def test_compare_tune_jobs_2_runs_the_studies_in_workers_with_the_same_trials(toy_data: Path, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from seqbench.execution import workers

    started: list[str] = []
    start = workers.start

    def counting_start(*args, **kwargs) -> workers.Worker:
        started.append(args[3])
        return start(*args, **kwargs)

    monkeypatch.setattr(workers, "start", counting_start)
    one_at_a_time = [*GRID, "--tune", "2", "--set", "threads=1"]
    side_by_side = [part if part != "1" or one_at_a_time[i - 1] != "--jobs" else "2" for i, part in enumerate(one_at_a_time)]
    assert "--jobs" in side_by_side and side_by_side[side_by_side.index("--jobs") + 1] == "2"
    serial = invoke(one_at_a_time, toy_data, tmp_path / "serial")
    assert serial.exit_code == 0, serial.output
    assert started == []
    parallel = invoke(side_by_side, toy_data, tmp_path / "parallel")
    assert parallel.exit_code == 0, parallel.output
    studies = sorted(name for name in started if name.startswith("seqbench:study:"))
    assert studies == ["seqbench:study:bce", "seqbench:study:cce"]  # one worker process per study
    for loss in ("bce", "cce"):  # progress from the workers reached this process's output
        assert f"{loss} trial 1 (2 of 2)" in parallel.output
    keys = ["number", "run_id", "state", "value", "params_json"]
    for study_dir in sorted(ResultsLayout(tmp_path / "serial").studies.iterdir()):
        serial_trials = pd.read_parquet(study_dir / "trials.parquet")[keys]
        parallel_trials = pd.read_parquet(ResultsLayout(tmp_path / "parallel").studies / study_dir.name / "trials.parquet")[keys]
        pd.testing.assert_frame_equal(serial_trials, parallel_trials)
    chosen = [compare_json([*one_at_a_time, "--no-train"], toy_data, tmp_path / store)["tables"]["tuning_chosen"] for store in ("serial", "parallel")]
    assert chosen[0] == chosen[1] and len(chosen[0]) == 2
