"""Trainer, stored runs and the train/eval/runs commands on a tiny data set the test writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.configure import make_config
from seqbench.errors import InputError, RuntimeFailure
from seqbench.storage.store import RunStore
from seqbench.training.reevaluate import evaluate_stored
from seqbench.training.trainer import Trainer, train_run

runner = CliRunner()
FAST = {"dataset": "toy", "epochs": 3, "batch_size": 32, "max_len": 10, "eval_batch_size": 64}


def train(toy_data: Path, results: Path, **overrides: object):
    return train_run(make_config(None, FAST | overrides), toy_data, results)


def test_same_config_gives_identical_metrics_and_another_seed_does_not(toy_data: Path, tmp_path: Path) -> None:
    first = train(toy_data, tmp_path / "a", model="sasrec", loss="cce", seed=1)
    again = train(toy_data, tmp_path / "b", model="sasrec", loss="cce", seed=1)
    other = train(toy_data, tmp_path / "c", model="sasrec", loss="cce", seed=2)
    assert first.run_id == again.run_id
    assert first.row["test_NDCG@10"] == again.row["test_NDCG@10"]
    assert first.epochs["train_loss"].tolist() == again.epochs["train_loss"].tolist()
    assert first.epochs["train_loss"].tolist() != other.epochs["train_loss"].tolist()


def test_early_stopping_restores_the_best_epoch(toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Validation NDCG@10 is made to peak at epoch 2, then fall: patience 2 stops after epoch 4.
    scripted = iter([0.2, 0.5, 0.4, 0.3, 0.1, 0.1])
    original = Trainer.evaluate

    def scripted_evaluate(self: Trainer, split: str):
        result = original(self, split)
        if split == "valid" and len(self.records) < 6 and not getattr(self, "_final", False):
            result.metrics["NDCG@10"] = next(scripted)
        return result

    monkeypatch.setattr(Trainer, "evaluate", scripted_evaluate)
    original_final = Trainer.final_evaluations

    def final(self: Trainer):
        self._final = True
        return original_final(self)

    monkeypatch.setattr(Trainer, "final_evaluations", final)
    stored = train(toy_data, tmp_path / "r", model="gru4rec", loss="bce", epochs=20, patience=2)
    assert stored.row["epochs_run"] == 4 and stored.row["best_epoch"] == 2
    best = stored.epochs.set_index("epoch").loc[2, "test_NDCG@10"]
    assert stored.row["test_NDCG@10"] == pytest.approx(best)


def test_epochs_zero_evaluates_the_untrained_model(toy_data: Path, tmp_path: Path) -> None:
    stored = train(toy_data, tmp_path / "r", model="sasrec", loss="ce", epochs=0)
    assert stored.row["status"] == "completed" and stored.row["epochs_run"] == 0
    assert 0.0 <= stored.row["test_NDCG@10"] <= 1.0


def test_eval_reproduces_stored_metrics(toy_data: Path, tmp_path: Path) -> None:
    stored = train(toy_data, tmp_path / "r", model="gru4rec", loss="cce")
    again = evaluate_stored(stored.run_id, tmp_path / "r", toy_data, "test")
    for name, value in again["metrics"].items():
        assert value == pytest.approx(stored.row[f"test_{name}"])
    per_t = evaluate_stored(stored.run_id, tmp_path / "r", toy_data, "test", per_timestamp=True)
    assert len(per_t["per_timestamp"]) == 10


def test_a_nan_loss_is_stored_as_a_failed_run(toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Trainer, "_step", lambda self, windows, rows: torch.tensor(float("nan")))
    with pytest.raises(RuntimeFailure, match="NaN"):
        train(toy_data, tmp_path / "r", model="gru4rec", loss="cce")
    table = RunStore(tmp_path / "r").table()
    assert table["status"].tolist() == ["failed"] and "NaN" in table["reason"][0]


def test_ctrl_c_keeps_the_epochs_done_so_far(toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Trainer.train_epoch

    def interrupt_at_epoch_3(self: Trainer, epoch: int, progress: object) -> float:
        if epoch == 3:
            raise KeyboardInterrupt
        return original(self, epoch, progress)

    monkeypatch.setattr(Trainer, "train_epoch", interrupt_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train(toy_data, tmp_path / "r", model="gru4rec", loss="cce", epochs=5)
    table = RunStore(tmp_path / "r").table()
    assert table["status"].tolist() == ["interrupted"] and table["epochs_run"].tolist() == [2]


def test_train_eval_and_runs_commands(toy_data: Path, tmp_path: Path) -> None:
    common = ["--data-dir", str(toy_data), "--results", str(tmp_path / "r")]
    result = runner.invoke(
        app,
        ["train", "--dataset", "toy", "--model", "sasrec", "--loss", "cce", "--epochs", "2", "--max-len", "10", "--json", "--set", "ce_impl=chunked", *common],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "completed" and set(document["metrics"]["test"]) >= {"HR@10", "NDCG@10", "MRR"}
    evaluated = json.loads(runner.invoke(app, ["eval", document["run_id"], "--json", *common]).stdout)
    assert evaluated["metrics"]["NDCG@10"] == pytest.approx(document["metrics"]["test"]["NDCG@10"])
    listed = json.loads(runner.invoke(app, ["runs", "--json", "--results", str(tmp_path / "r")]).stdout)
    assert [row["run_id"] for row in listed["runs"]] == [document["run_id"]]
    # train --json and runs --json print the same record (one shape, storage/records.py)
    assert listed["runs"][0] == document


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--loss", "nope"], "unknown loss 'nope'"),
        (["--dataset", "beauty"], "seqbench prepare beauty"),
        (["--epochs", "-1"], "epochs must be >= 0"),
        (["--max-len", "1"], "max_len must be >= 2"),
        (["--set", "nonsense=1"], "unknown config key 'nonsense'"),
    ],
)
def test_bad_train_input_exits_2_with_one_line(toy_data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["train", "--dataset", "toy", *args, "--data-dir", str(toy_data), "--results", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_eval_of_a_missing_run_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "nope", "--results", str(tmp_path)])
    assert result.exit_code == 2 and "no stored run 'nope'" in result.output


def test_invalid_config_raises_input_error() -> None:
    with pytest.raises(InputError):
        make_config(None, {"batch_size": 0})


def test_bpr_trains_gru4rec_at_the_last_position_and_others_at_all(toy_data: Path, tmp_path: Path) -> None:
    gru = Trainer(make_config(None, FAST | {"model": "gru4rec", "loss": "bpr"}), load_toy(toy_data), torch.device("cpu"))
    sas = Trainer(make_config(None, FAST | {"model": "sasrec", "loss": "bpr"}), load_toy(toy_data), torch.device("cpu"))
    forced = Trainer(make_config(None, FAST | {"model": "gru4rec", "loss": "bpr", "positions": "all"}), load_toy(toy_data), torch.device("cpu"))
    assert (gru.loss.positions, sas.loss.positions, forced.loss.positions) == ("last", "all", "all")


def load_toy(data_dir: Path):
    from seqbench.data.sequences import load_prepared

    return load_prepared("toy", data_dir)


def test_time_budget_stops_training_after_the_epoch_that_exceeds_it(toy_data: Path, tmp_path: Path) -> None:
    stored = train(toy_data, tmp_path / "r", model="gru4rec", loss="cce", epochs=50, patience=50, time_budget=1e-6)
    assert stored.row["epochs_run"] == 1 and stored.row["status"] == "completed"
    assert "time budget" in stored.row["notes"]
