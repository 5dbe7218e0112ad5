"""Run config (defaults < YAML < --set, validation, run ids) and the atomic Parquet run store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seqbench.config import build_config, load_yaml, parse_assignments
from seqbench.errors import InputError
from seqbench.storage.store import RunStore, StoredRun, filter_runs, ranks_frame

LOSS_KEYS = {"cce": ["ce_impl", "chunk_size"], "sampled-ce": ["num_negatives"], "bce": ["num_negatives"]}
MODEL_KEYS = {"sasrec": ["dropout", "preset"], "gru4rec": ["dropout"]}


def make(base: dict | None = None, sets: list[str] | None = None):
    return build_config(base, parse_assignments(sets or []), LOSS_KEYS, MODEL_KEYS)


def test_yaml_is_overridden_by_set_and_values_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 7\nlr: 0.01\nloss: cce\nmodel_params: {dropout: 0.3}\n")
    config = make(load_yaml(path), ["epochs=3", "lr=5e-4", "exclude_seen=false", "ks=1,10"])
    assert (config.epochs, config.lr, config.exclude_seen, config.ks) == (3, 5e-4, False, (1, 10))
    assert config.model_params == {"dropout": 0.3}


def test_bare_and_scoped_hyper_parameters_are_routed() -> None:
    config = make(None, ["ce_impl=chunked", "model.dropout=0.5", "sampled-ce.num_negatives=64"])
    assert config.loss_params == {"ce_impl": "chunked"}  # the sampled-ce setting is for another loss
    assert config.model_params == {"dropout": 0.5}
    grid_member = make({"loss": "sampled-ce"}, ["sampled-ce.num_negatives=64"])
    assert grid_member.loss_params == {"num_negatives": 64}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["epochs=-1"], "epochs must be >= 0"),
        (["max_len=1"], "max_len must be >= 2"),
        (["bogus=1"], "unknown config key 'bogus'"),
        (["epochs=lots"], "epochs='lots' is not a valid int"),
        (["loss=nope"], "unknown loss 'nope'"),
        (["model=nope"], "unknown model 'nope'"),
        (["device=tpu"], "device must be one of"),
        (["epochs"], "--set expects key=value"),
    ],
)
def test_impossible_or_unknown_values_are_rejected(sets: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        make(None, sets)


def test_run_id_is_stable_and_changes_with_the_config() -> None:
    first, again = make(None, ["seed=1"]), make(None, ["seed=1"])
    assert first.run_id("cpu") == again.run_id("cpu")
    assert first.run_id("cpu") != make(None, ["seed=2"]).run_id("cpu")
    assert first.run_id("cpu") != first.run_id("cuda")
    assert first.run_id("cpu") != make(None, ["seed=1", "ce_impl=chunked"]).run_id("cpu")


def stored_run(run_id: str, status: str = "completed", ndcg: float = 0.1) -> StoredRun:
    row = {"run_id": run_id, "status": status, "dataset": "toy", "model": "sasrec", "loss": "cce", "test_NDCG@10": ndcg}
    epochs = pd.DataFrame({"epoch": [1, 2], "train_seconds": [0.5, 1.0], "test_NDCG@10": [0.05, ndcg]})
    ranks = ranks_frame({"test": (np.arange(3), np.array([0, 5, 20]))})
    return StoredRun(run_id, row, epochs, ranks, {"w": torch.ones(2)})


def test_store_round_trips_runs_as_one_table(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.write(stored_run("a", ndcg=0.1))
    store.write(stored_run("b", status="failed", ndcg=0.2))
    table = store.table()
    assert sorted(table["run_id"]) == ["a", "b"]
    assert filter_runs(table, status="completed")["run_id"].tolist() == ["a"]
    assert store.row("b")["test_NDCG@10"] == pytest.approx(0.2)
    assert store.ranks("a", "test")["rank"].tolist() == [0, 5, 20]
    assert torch.equal(store.checkpoint("a")["w"], torch.ones(2))


def test_a_run_killed_while_writing_leaves_nothing_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(tmp_path)

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the process is stopped in the middle of the run directory

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write(stored_run("a"))
    assert store.table().empty and not store.has("a")
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_checkpoint_that_is_not_one_is_a_clear_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.write(stored_run("a"))
    (store.run_dir("a") / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        store.checkpoint("a")
    with pytest.raises(InputError, match="no stored run 'zzz'"):
        store.row("zzz")
