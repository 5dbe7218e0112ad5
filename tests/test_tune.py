"""`seqbench tune`: search spaces, pruned runs, resumable and deterministic studies, validation-only selection."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.config import FIELD_TYPES
from seqbench.configure import make_config
from seqbench.errors import InputError
from seqbench.events import StopRun
from seqbench.losses.registry import LOSSES, loss_class, make_params
from seqbench.models.registry import MODELS
from seqbench.models.registry import make_config as model_config
from seqbench.services import tune as tune_service
from seqbench.space import Space, choice, integer, real
from seqbench.storage.store import RunStore
from seqbench.training.trainer import Trainer, train_run
from seqbench.tuning import studies as tuning

runner = CliRunner()
try:
    import optuna
except ImportError:
    optuna = None
# The spaces need no Optuna; the studies do (the dev extra installs it).
needs_optuna = pytest.mark.skipif(optuna is None, reason="optuna not installed: pip install 'seqbench[tune]'")
TINY = {"epochs": 2, "batch_size": 32, "max_len": 10, "eval_batch_size": 64, "model.hidden_size": 16}
# Prune from the first epoch once one trial has finished, so a 2-epoch study can prune at all.
EAGER = tuning.TuneSettings(random_trials=2, prune_after_trials=1, prune_warmup_epochs=0)
COMPARED = ["number", "run_id", "state", "value", "params_json", "intermediate_json", "epochs_run"]


def study(data: Path, results: Path, trials: int, losses: tuple[str, ...] = ("bce",), seed_override: int = 3,
          overrides_extra: dict | None = None, **kwargs: object) -> tune_service.TuneReport:
    overrides = TINY | (overrides_extra or {})
    return tune_service.tune("toy", "sasrec", list(losses), trials, data, results, seed=seed_override, overrides=overrides, settings=EAGER, **kwargs)


def table(report: tune_service.TuneReport, loss: str = "bce") -> pd.DataFrame:
    return report.studies[loss][1][COMPARED]


# --- spaces ------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", LOSSES.names())
def test_every_point_of_every_loss_space_builds_a_valid_run(loss: str) -> None:
    for model in MODELS:
        for space in tuning.applicable_space(model, loss):
            scope, name = space.scope()
            for value in space.points():
                config = make_config(None, {"dataset": "toy", "model": model, "loss": loss, space.name: value})
                if scope == "loss":
                    assert config.loss_params == {name: value}
                    make_params(loss, config.loss_params, num_items=40)  # the loss's own validation
                elif scope == "model":
                    assert config.model_params == {name: value}
                    model_config(model, config.model_params)
                else:
                    assert name in FIELD_TYPES and getattr(config, name) == value


def test_spaces_are_declared_by_the_losses_and_shared_ones_follow_the_model() -> None:
    assert {s.name for s in loss_class("gbce").space} == {"loss.num_negatives", "loss.t"}
    assert loss_class("cce").space == ()
    assert "model.attn_dropout" in {s.name for s in tuning.applicable_space("sasrec", "cce")}
    assert "model.attn_dropout" not in {s.name for s in tuning.applicable_space("gru4rec", "cce")}


@pytest.mark.parametrize("make", [lambda: real("lr", 1e-2, 1e-4), lambda: real("lr", 0.0, 1.0, log=True),
                                  lambda: Space("x"), lambda: integer("k", 1, 2.5), lambda: choice("c", 1, 1)])
def test_a_malformed_space_is_an_input_error(make) -> None:
    with pytest.raises(InputError, match="search space"):
        make()


def test_a_key_fixed_with_set_is_not_searched() -> None:
    planned = tuning.plan_study("toy", "sasrec", "bce", 0, {"lr": 1e-3, "K": 4, "dropout": 0.2}, EAGER)
    names = {s.name for s in planned.space}
    assert not names & {"lr", "loss.num_negatives", "model.dropout"}
    assert "weight_decay" in names and planned.base["K"] == 4


def test_missing_optuna_is_a_one_line_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(InputError, match=r"pip install 'seqbench\[tune\]'"):
        tuning.require_optuna()


# --- the trainer's early stop ----------------------------------------------------------------------
def test_a_callback_can_stop_a_run_which_is_stored_as_pruned_not_failed(toy_data: Path, tmp_path: Path) -> None:
    def stop_after_first(event: str, info: dict) -> None:
        if event == "epoch":
            raise StopRun("enough")

    config = make_config(None, {"dataset": "toy", "model": "sasrec", "loss": "bce"} | TINY | {"epochs": 3})
    stored = train_run(config, toy_data, tmp_path / "r", progress=stop_after_first)  # no exception
    row = RunStore(tmp_path / "r").row(stored.run_id)
    assert row["status"] == "pruned" and row["reason"] == "enough" and row["epochs_run"] == 1
    assert row["valid_NDCG@10"] == pytest.approx(stored.epochs["valid_NDCG@10"].iloc[0])


# --- studies ---------------------------------------------------------------------------------------
@needs_optuna
def test_same_command_in_two_fresh_stores_gives_the_same_trials(toy_data: Path, tmp_path: Path) -> None:
    first, second = study(toy_data, tmp_path / "a", 4), study(toy_data, tmp_path / "b", 4)
    pd.testing.assert_frame_equal(table(first), table(second))
    params = [json.loads(p) for p in table(first)["params_json"]]
    assert len({json.dumps(p, sort_keys=True) for p in params}) == 4  # the sampler explores
    store = RunStore(tmp_path / "a")
    for row in table(first).itertuples():  # every trial is a stored run with the trial's state
        assert store.row(row.run_id)["status"] == row.state
        if row.state == "pruned":
            assert row.epochs_run < TINY["epochs"]


@needs_optuna
def test_the_pruner_stops_trials_below_the_median_and_stores_them_as_pruned(toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Trainer.evaluate

    def scripted(self: Trainer, split: str):  # validation NDCG@10 = 100 x lr at every epoch
        result = original(self, split)
        if split == "valid":
            result.metrics["NDCG@10"] = 100 * self.config.lr
        return result

    monkeypatch.setattr(Trainer, "evaluate", scripted)
    trials = study(toy_data, tmp_path / "r", 5, overrides_extra={"epochs": 3})
    rows = table(trials)
    lrs = [json.loads(p)["lr"] for p in rows["params_json"]]
    pruned = rows.index[rows["state"] == "pruned"].tolist()
    assert pruned and rows.loc[0, "state"] == "completed"
    store = RunStore(tmp_path / "r")
    for index in pruned:  # cut after epoch 1, below an earlier completed trial
        earlier = [lrs[i] for i in range(index) if rows.loc[i, "state"] == "completed"]
        assert rows.loc[index, "epochs_run"] == 1 and lrs[index] < max(earlier)
        assert store.row(rows.loc[index, "run_id"])["status"] == "pruned"
    assert trials.chosen.loc[0, "lr"] == max(lr for lr, state in zip(lrs, rows["state"]) if state == "completed")


@needs_optuna
def test_an_interrupted_study_continues_and_a_second_command_trains_nothing(toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = table(study(toy_data, tmp_path / "ref", 3))
    results = tmp_path / "r"
    calls = {"n": 0}
    original = Trainer.train_epoch

    def interrupt_second_trial(self: Trainer, epoch: int, progress):  # Ctrl-C inside trial 1
        calls["n"] += 1
        if calls["n"] > reference["epochs_run"].iloc[0]:
            raise KeyboardInterrupt
        return original(self, epoch, progress)

    monkeypatch.setattr(Trainer, "train_epoch", interrupt_second_trial)
    with pytest.raises(KeyboardInterrupt):
        study(toy_data, results, 3)
    monkeypatch.setattr(Trainer, "train_epoch", original)
    kept = tuning.load_trials(results, tuning.plan_study("toy", "sasrec", "bce", 3, dict(TINY), EAGER, num_items=40).study_id)
    assert len(kept) == 1  # trial 0 was saved, trial 1 was not
    assert RunStore(results).table()["status"].tolist().count("interrupted") == 1
    resumed = study(toy_data, results, 3)
    pd.testing.assert_frame_equal(table(resumed), reference)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(Trainer, "fit", no_training)
    again = study(toy_data, results, 3, retrain_seeds=[3])  # seed 3 = the study's: the best run itself
    pd.testing.assert_frame_equal(table(again), reference)
    assert again.retrained["reused"].all()


@needs_optuna
def test_selection_never_reads_test_metrics(toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = study(toy_data, tmp_path / "clean", 4)
    original = Trainer.evaluate

    def poisoned(self: Trainer, split: str):  # test metrics reversed: 1 - x everywhere
        result = original(self, split)
        if split == "test":
            result.metrics = {name: 1.0 - value for name, value in result.metrics.items()}
        return result

    monkeypatch.setattr(Trainer, "evaluate", poisoned)
    dirty = study(toy_data, tmp_path / "dirty", 4)
    run = RunStore(tmp_path / "dirty").row(table(dirty)["run_id"].iloc[0])
    assert run["test_NDCG@10"] == pytest.approx(1 - RunStore(tmp_path / "clean").row(run["run_id"])["test_NDCG@10"])
    pd.testing.assert_frame_equal(table(clean), table(dirty))
    assert clean.best == dirty.best
    pd.testing.assert_frame_equal(clean.chosen, dirty.chosen)


@needs_optuna
def test_tuned_configs_rebuild_the_best_trial_and_tables_cover_every_loss(toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "r"
    report = study(toy_data, results, 3, losses=("bce", "cce"), plots=tmp_path / "plots")
    chosen = tuning.tuned_configs(results, "toy", "sasrec", ["bce", "cce"])
    assert chosen == report.best
    for loss, overrides in chosen.items():
        trials = report.studies[loss][1]
        best = trials[trials["state"] == "completed"].sort_values("value").iloc[-1]
        assert make_config(None, overrides | {"seed": 3}).run_id("cpu") == best["run_id"]
    budget = report.budget.set_index("loss")
    assert budget["trials"].tolist() == [3, 3] and budget["max_epochs"].tolist() == [2, 2]
    assert (budget["epochs_trained"] <= budget["budget_epochs"]).all() and (budget["epochs_trained"] >= 3).all()
    assert "loss.num_negatives" in report.chosen.columns and pd.isna(report.chosen.set_index("loss").loc["cce", "loss.num_negatives"])
    assert all(path.is_file() and path.stat().st_size > 0 for path in report.figures) and len(report.figures) == 2
    assert tuning.tuned_configs(results, "toy", "sasrec", ["bce"], seed=3, overrides=dict(TINY), settings=EAGER) == {"bce": report.best["bce"]}
    study(toy_data, results, 1, seed_override=4)  # a second bce study (another seed): now ambiguous
    with pytest.raises(InputError, match="2 studies for toy/sasrec/bce"):
        tuning.tuned_configs(results, "toy", "sasrec", ["bce"])
    with pytest.raises(InputError, match="no stored study"):
        tuning.tuned_configs(results, "toy", "sasrec", ["sce"])


# --- the command -----------------------------------------------------------------------------------
def invoke(args: list[str], data: Path, results: Path):
    return runner.invoke(app, ["tune", *args, "--data-dir", str(data), "--results", str(results)])


CLI = ["--dataset", "toy", "--model", "sasrec", "--losses", "bce,cce", "--trials", "2", "--epochs", "1",
       "--set", "batch_size=32", "--set", "max_len=10", "--set", "model.hidden_size=16", "--set", "lr=0.005"]


@needs_optuna
def test_tune_command_prints_budget_and_choices_and_resumes(toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "r"
    first = invoke([*CLI, "--json"], toy_data, results)
    assert first.exit_code == 0, first.output
    document = json.loads(first.stdout)
    assert [row["trials"] for row in document["budget"]] == [2, 2]
    assert {row["loss"] for row in document["chosen"]} == {"bce", "cce"}
    assert all("lr" not in row for row in document["chosen"])  # fixed by --set: not searched
    assert document["best_overrides"]["cce"]["lr"] == 0.005
    study_ids = [entry["study_id"] for entry in document["studies"].values()]
    assert all((results / "studies" / sid / "trials.parquet").is_file() for sid in study_ids)
    runs_before = len(RunStore(results).table())
    text = invoke(CLI, toy_data, results)
    assert text.exit_code == 0, text.output
    assert "Budget per loss" in text.stdout and "Chosen hyper-parameters" in text.stdout
    assert len(RunStore(results).table()) == runs_before  # nothing new trained


def test_tune_command_rejects_an_unknown_loss_in_one_line(toy_data: Path, tmp_path: Path) -> None:
    result = invoke(["--dataset", "toy", "--losses", "bce,nosuch"], toy_data, tmp_path / "r")
    assert result.exit_code == 2 and "unknown loss 'nosuch'" in result.output
    assert not (tmp_path / "r" / "studies").exists()


@needs_optuna
def test_tune_jobs_2_runs_the_studies_side_by_side_with_the_same_trials_and_choices(toy_data: Path, tmp_path: Path) -> None:
    args = [*CLI, "--set", "threads=1", "--retrain-seeds", "0,1", "--json"]
    serial = invoke(args, toy_data, tmp_path / "serial")
    parallel = invoke([*args, "--jobs", "2"], toy_data, tmp_path / "parallel")
    assert serial.exit_code == 0 and parallel.exit_code == 0, serial.output + parallel.output
    one, two = json.loads(serial.stdout), json.loads(parallel.stdout)
    assert one["chosen"] == two["chosen"] and one["best_overrides"] == two["best_overrides"]
    keys = ["number", "run_id", "state", "value", "params_json"]
    for entry in one["studies"].values():
        trials = [pd.read_parquet(tmp_path / store / "studies" / entry["study_id"] / "trials.parquet")[keys] for store in ("serial", "parallel")]
        pd.testing.assert_frame_equal(*trials)
    tables = [RunStore(tmp_path / store).table().set_index("run_id").sort_index() for store in ("serial", "parallel")]
    assert list(tables[0].index) == list(tables[1].index)  # the same trial and retrain runs
    assert tables[0]["test_NDCG@10"].equals(tables[1]["test_NDCG@10"])  # threads=1: the same numbers


def test_tune_rejects_jobs_beyond_the_cores_in_one_line(toy_data: Path, tmp_path: Path) -> None:
    result = invoke([*CLI, "--set", "threads=2", "--jobs", "64"], toy_data, tmp_path / "r")
    assert result.exit_code == 2 and "--jobs 64 runs of threads=2 need 128 cores" in result.output
    assert not (tmp_path / "r" / "studies").exists()
