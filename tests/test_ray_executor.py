"""The Ray executor: same stored runs as the local executor, failures isolated, Ctrl-C, no Ray.

A local Ray (2 CPUs) is started once for the module. Failures are injected on the workers by a
training function that looks for marker files (local Ray workers share this machine's disk).
"""

from __future__ import annotations

import builtins
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from seqbench.config import RunConfig
from seqbench.errors import InputError
from seqbench.execution.grid import run_grid
from seqbench.storage.store import RunStore, StoredRun

RAY_MISSING = "Ray is not installed: `pip install 'seqbench[ray]'` to run the Ray executor tests"
METRIC_PREFIXES = ("valid_", "test_")


@pytest.fixture(scope="module")
def ray_local() -> Any:
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    # One logical GPU (no hardware needed): lets the GPU scheduling path run with fake training.
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    # The injected training functions below live in this test module, which workers cannot
    # import: ship them by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def executor(**kwargs: Any) -> Any:
    from seqbench.execution.ray_executor import RayExecutor

    return RayExecutor(cpus_per_run=1, **kwargs)


def fake_config(loss: str, seed: int = 0) -> RunConfig:
    return RunConfig(dataset="toy", model="gru4rec", loss=loss, seed=seed, epochs=1, device="cpu")


@dataclass
class InjectedTraining:
    """A stand-in for ``run_training`` on the workers, steered by marker files in ``markers``.

    ``raise-<loss>``: raises; ``die-<loss>``: the worker process exits (containing ``once``: only
    the first attempt dies); ``sleep``: each run sleeps that many seconds over three "epochs".
    Each run that gets that far leaves ``started-<loss>-<seed>`` and ``span-<loss>-<seed>`` (its
    start and end times), and returns a small run whose metric is computed from
    the data set the worker received.
    """

    markers: Path

    def __call__(self, config: RunConfig, dataset: Any, device: torch.device, pretrain_cache: Path, progress: Any) -> Any:
        if (self.markers / f"raise-{config.loss}").exists():
            raise RuntimeError(f"injected failure in {config.loss}")
        die = self.markers / f"die-{config.loss}"
        if die.exists():
            if die.read_text() == "once":
                die.unlink()
            os._exit(1)
        began = time.time()
        (self.markers / f"started-{config.loss}-{config.seed}").touch()
        sleep = self.markers / "sleep"
        for epoch in (1, 2, 3):
            if sleep.exists():
                time.sleep(float(sleep.read_text()) / 3)
            progress("epoch", {"epoch": epoch, "valid_NDCG@10": 0.5, "train_seconds": 0.1})
        (self.markers / f"span-{config.loss}-{config.seed}").write_text(f"{began} {time.time()}")
        run_id = config.run_id(device.type)
        metric = float(dataset.train.values.sum() % 97) / 97 + config.seed
        row = {
            "run_id": run_id, "status": "completed", "reason": "", "loss": config.loss, "test_NDCG@10": metric,
            "threads": torch.get_num_threads(), "device": device.type, "visible_gpus": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        }
        return StoredRun(run_id, row, pd.DataFrame({"epoch": [1]}), checkpoint={"w": torch.ones(3)}), None


def stored_dirs(results: Path) -> list[str]:
    runs = results / "runs"
    return sorted(path.name for path in runs.iterdir()) if runs.is_dir() else []


# --- without Ray --------------------------------------------------------------------------------
def test_factory_without_ray_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from seqbench.execution.ray_executor import make_ray_executor

    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(InputError) as caught:
        make_ray_executor(None, None, None)
    assert caught.value.exit_code == 2
    assert "pip install 'seqbench[ray]'" in caught.value.message


def test_bad_resources_are_input_errors() -> None:
    from seqbench.execution.ray_executor import RayExecutor

    with pytest.raises(InputError, match="cpus-per-run"):
        RayExecutor(cpus_per_run=0)
    with pytest.raises(InputError, match="gpus-per-run"):
        RayExecutor(gpus_per_run=-1)


# --- with a local Ray ---------------------------------------------------------------------------
def test_ray_grid_stores_the_same_runs_as_the_local_executor(ray_local: Any, toy_data: Path, tmp_path: Path) -> None:
    for module in ("seqbench.losses.registry", "seqbench.models.registry", "seqbench.data.prepare"):
        pytest.importorskip(module, reason="real training needs the losses, models and data layers (merged on main)")
    from seqbench.execution.executor import InProcessExecutor
    from seqbench.execution.grid import GridSpec, expand

    # threads=1: both executors pin torch to one thread, so reductions run in the same order.
    overrides = {"epochs": 2, "batch_size": 64, "max_len": 10, "eval_batch_size": 128, "device": "cpu", "threads": 1}
    configs = expand(GridSpec(["toy"], ["gru4rec"], ["bce", "ce"], [0], overrides))
    local = run_grid(configs, toy_data, tmp_path / "local", InProcessExecutor())
    events: list[tuple[str, str]] = []
    remote = run_grid(configs, toy_data, tmp_path / "ray", executor(), update=lambda event, info: events.append((event, info["label"])))

    assert [o.status for o in local] == ["completed", "completed"], [o.reason for o in local]
    assert [o.status for o in remote] == ["completed", "completed"], [o.reason for o in remote]
    assert [o.run_id for o in remote] == [o.run_id for o in local]
    assert [o.metrics for o in remote] == [o.metrics for o in local]
    local_store, ray_store = RunStore(tmp_path / "local"), RunStore(tmp_path / "ray")
    for outcome in remote:
        local_row, ray_row = local_store.row(outcome.run_id), ray_store.row(outcome.run_id)
        metric_keys = sorted(k for k in local_row if k.startswith(METRIC_PREFIXES))
        assert metric_keys and {k: ray_row[k] for k in metric_keys} == {k: local_row[k] for k in metric_keys}
        pd.testing.assert_series_equal(ray_store.epochs(outcome.run_id)["train_loss"], local_store.epochs(outcome.run_id)["train_loss"])
        pd.testing.assert_frame_equal(ray_store.ranks(outcome.run_id), local_store.ranks(outcome.run_id))
        # Live progress came from the workers: start, epochs, end, in that order.
        mine = [event for event, label in events if label == outcome.label]
        assert mine[0] == "run-start" and mine[-1] == "run-end" and "epoch" in mine
    assert stored_dirs(tmp_path / "ray") == sorted(o.run_id for o in remote)


def test_a_raising_task_fails_only_its_run_and_a_rerun_completes_it(ray_local: Any, toy_data: Path, tmp_path: Path) -> None:
    markers, results = tmp_path / "markers", tmp_path / "results"
    markers.mkdir()
    (markers / "raise-ce").touch()
    configs = [fake_config("bce"), fake_config("ce"), fake_config("cce")]
    events: list[tuple[str, dict[str, Any]]] = []
    first = run_grid(configs, toy_data, results, executor(train_fn=InjectedTraining(markers)), update=lambda e, i: events.append((e, i)))

    assert [o.status for o in first] == ["completed", "failed", "completed"]
    assert first[1].reason == "RuntimeError: injected failure in ce"
    assert stored_dirs(results) == sorted([first[0].run_id, first[2].run_id])
    expected = float(RunStore(results).row(first[0].run_id)["test_NDCG@10"])
    assert first[0].metrics == {"NDCG@10": expected} and RunStore(results).row(first[0].run_id)["threads"] == 1
    ends = [i for e, i in events if e == "run-end"]
    assert len(ends) == 3 and all(i.get("host") for i in ends)
    assert [e for e, i in events if i["label"] == first[1].label] == ["run-start", "run-end"]

    (markers / "raise-ce").unlink()
    second = run_grid(configs, toy_data, results, executor(train_fn=InjectedTraining(markers)))
    assert {o.label: o.status for o in second} == {first[0].label: "skipped", first[1].label: "completed", first[2].label: "skipped"}
    assert stored_dirs(results) == sorted(o.run_id for o in first)  # three runs, no duplicates, no temp dirs


def test_runs_in_flight_never_exceed_the_cpus(ray_local: Any, toy_data: Path, tmp_path: Path) -> None:
    # Relaying progress must not block a task in ray.get: Ray would lend its CPU to another run.
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / "sleep").write_text("0.9")
    configs = [fake_config("bce", seed) for seed in range(4)]
    outcomes = executor(train_fn=InjectedTraining(markers)).run(configs, toy_data, tmp_path / "results", None, None)
    assert [o.status for o in outcomes] == ["completed"] * 4
    spans = [tuple(map(float, path.read_text().split())) for path in markers.glob("span-*")]
    in_flight = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    assert len(spans) == 4 and in_flight <= 2


def test_a_dead_worker_is_retried_once_then_its_run_fails(ray_local: Any, toy_data: Path, tmp_path: Path) -> None:
    markers, results = tmp_path / "markers", tmp_path / "results"
    markers.mkdir()
    (markers / "die-bce").write_text("once")  # the retry survives
    (markers / "die-ce").write_text("always")
    outcomes = executor(train_fn=InjectedTraining(markers)).run([fake_config("bce"), fake_config("ce")], toy_data, results, None, None)

    assert outcomes[0].status == "completed"
    assert outcomes[1].status == "failed" and "worker died" in outcomes[1].reason
    assert stored_dirs(results) == [outcomes[0].run_id]  # nothing, not even a partial run, for the dead one


def test_ctrl_c_cancels_pending_runs_and_keeps_finished_ones(ray_local: Any, toy_data: Path, tmp_path: Path) -> None:
    markers, results = tmp_path / "markers", tmp_path / "results"
    markers.mkdir()
    (markers / "sleep").write_text("1.5")
    finished: list[str] = []

    def interrupt_after_first(event: str, info: dict[str, Any]) -> None:
        if event == "run-end":
            finished.append(info["run_id"])
            raise KeyboardInterrupt

    configs = [fake_config("bce", seed) for seed in range(5)]
    with pytest.raises(KeyboardInterrupt):
        executor(train_fn=InjectedTraining(markers)).run(configs, toy_data, results, None, interrupt_after_first)
    assert stored_dirs(results) == finished and len(finished) == 1
    time.sleep(2.0)  # longer than a run: a task that was not cancelled would have started by now
    # Two CPUs: two runs started, plus at most the one Ray put on the CPU freed by the first
    # finished run before the driver cancelled the rest; the others never ran.
    assert len(list(markers.glob("started-*"))) <= 3
    # The cancelled runs are simply pending again: a re-run trains exactly those.
    (markers / "sleep").unlink()
    rerun = run_grid(configs, toy_data, results, executor(train_fn=InjectedTraining(markers)))
    assert sorted(o.status for o in rerun) == ["completed"] * 4 + ["skipped"]
    assert len(stored_dirs(results)) == 5


def test_workers_without_the_data_dir_read_the_object_store_copy(ray_local: Any, toy_data: Path) -> None:
    from seqbench.data.sequences import load_prepared
    from seqbench.execution.ray_data import DataSource
    from seqbench.execution.ray_data import digest as _digest
    from seqbench.execution.ray_data import read_files as _read_files

    files = _read_files(toy_data / "toy")
    source = DataSource("toy", "/nonexistent/data", _digest(files))
    shutil.rmtree(Path(tempfile.gettempdir()) / "seqbench-ray-data" / source.digest[:16], ignore_errors=True)

    @ray_local.remote
    def load(source: DataSource, files: dict[str, bytes]) -> tuple[np.ndarray, np.ndarray, int]:
        from seqbench.execution import (
            ray_data as ray_executor,  # the worker's module, not a pickled copy
        )

        ray_executor._LOADED.clear()  # a worker of an earlier test may hold the data set already
        dataset = ray_executor.load_on_worker(source, files)
        return dataset.train.values, dataset.test.targets, dataset.num_items

    values, targets, num_items = ray_local.get(load.remote(source, ray_local.put(files)))
    expected = load_prepared("toy", toy_data)
    assert num_items == expected.num_items
    np.testing.assert_array_equal(values, expected.train.values)
    np.testing.assert_array_equal(targets, expected.test.targets)
    assert (Path(tempfile.gettempdir()) / "seqbench-ray-data" / source.digest[:16] / "toy" / "meta.json").is_file()


def test_runs_get_a_gpu_each_when_the_cluster_has_gpus(ray_local: Any, toy_data: Path, tmp_path: Path) -> None:
    markers, results = tmp_path / "markers", tmp_path / "results"
    markers.mkdir()
    (markers / "sleep").write_text("0.6")
    configs = [fake_config("bce", seed) for seed in range(2)]
    for config in configs:
        config.device = "auto"
    outcomes = executor(train_fn=InjectedTraining(markers)).run(configs, toy_data, results, None, None)

    assert [o.status for o in outcomes] == ["completed"] * 2
    assert [o.run_id for o in outcomes] == [config.run_id("cuda") for config in configs]
    rows = [RunStore(results).row(o.run_id) for o in outcomes]
    assert [(row["device"], row["visible_gpus"]) for row in rows] == [("cuda", "0")] * 2
    spans = sorted(tuple(map(float, path.read_text().split())) for path in markers.glob("span-*"))
    assert spans[0][1] <= spans[1][0]  # one GPU: the second run waited for the first


def test_cuda_without_gpus_per_run_is_an_input_error(ray_local: Any) -> None:
    config = fake_config("ce")
    config.device = "cuda"
    with pytest.raises(InputError, match="gpus-per-run"):
        executor(gpus_per_run=0).device_type(config)


def test_tuning_studies_through_ray_draw_prune_and_choose_as_locally(ray_local: Any, toy_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from seqbench.tuning import studies as tuning
    from seqbench.tuning.study_pool import run_studies
    from seqbench.tuning.trials import run_studies_through

    # Pruning from the second trial on (one completed trial, epoch 1), so the rules travel to the workers.
    settings = tuning.TuneSettings(random_trials=2, prune_after_trials=1, prune_warmup_epochs=1)
    base = {"epochs": 6, "batch_size": 32, "max_len": 10, "model.hidden_size": 16, "device": "cpu", "threads": 1}
    studies = [tuning.plan_study("toy", "sasrec", loss, 0, base, settings, 40) for loss in ("bce", "cce")]
    run_studies(studies, 5, toy_data, tmp_path / "local", retrain_seeds=[0, 1])
    events: list[str] = []
    run_studies_through(executor(), studies, 5, toy_data, tmp_path / "ray", updates=[lambda kind, info: events.append(kind)] * 2,
                        retrain_seeds=[0, 1])
    keys = ["number", "run_id", "state", "value", "params_json", "intermediate_json"]
    states = []
    for study in studies:
        local, remote = (tuning.load_trials(tmp_path / store, study.study_id)[keys] for store in ("local", "ray"))
        pd.testing.assert_frame_equal(local, remote)
        states += list(local["state"])
    assert "pruned" in states and "completed" in states  # the rule stopped some trials on the workers
    assert "trial-start" in events and "trial" in events and "epoch" in events  # progress came back from the workers
    local_runs, ray_runs = (RunStore(tmp_path / store).table().set_index("run_id").sort_index() for store in ("local", "ray"))
    assert list(local_runs.index) == list(ray_runs.index)  # the same trials and the same retrains
    assert local_runs["status"].equals(ray_runs["status"]) and local_runs["valid_NDCG@10"].equals(ray_runs["valid_NDCG@10"])


def test_seqbench_tune_on_ray_stores_the_trials_it_stores_locally(ray_local: Any, toy_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    import json

    from typer.testing import CliRunner

    from seqbench.cli import app

    args = ["tune", "--dataset", "toy", "--model", "sasrec", "--losses", "bce,cce", "--trials", "3", "--epochs", "2",
            "--set", "batch_size=32", "--set", "max_len=10", "--set", "model.hidden_size=16", "--set", "threads=1",
            "--set", "device=cpu", "--data-dir", str(toy_data), "--json"]
    local = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "local")])
    remote = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "ray"), "--executor", "ray", "--cpus-per-run", "1"])
    assert local.exit_code == 0 and remote.exit_code == 0, local.output + remote.output
    assert json.loads(local.stdout)["chosen"] == json.loads(remote.stdout)["chosen"]
    assert stored_dirs(tmp_path / "local") == stored_dirs(tmp_path / "ray")
    refused = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "x"), "--executor", "ray", "--jobs", "2"])
    assert refused.exit_code == 2 and "--jobs is for the local executor" in refused.output


def test_a_plugin_loss_and_model_train_on_ray_workers(ray_local: Any, toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers were started before the plugin was loaded: each task names the plugins to load."""
    from test_plugins import PLUGIN

    from seqbench import plugins
    from seqbench.execution.grid import GridSpec, expand
    from seqbench.losses.registry import LOSSES
    from seqbench.models.registry import MODELS

    for registry in (LOSSES, MODELS):  # this test's registrations end with it
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(plugins, "_LOADED", {})
    monkeypatch.setattr(plugins, "_ORIGINS", {})
    monkeypatch.delenv(plugins.ENV, raising=False)
    (tmp_path / "mine.py").write_text(PLUGIN)
    plugins.load(str(tmp_path / "mine.py"))
    monkeypatch.delenv(plugins.ENV, raising=False)  # the task's argument, not the environment, carries it
    overrides = {"epochs": 1, "batch_size": 64, "max_len": 10, "eval_batch_size": 128, "device": "cpu", "threads": 1}
    outcomes = run_grid(expand(GridSpec(["toy"], ["bag"], ["focal-ce"], [0], overrides)), toy_data, tmp_path / "ray", executor())
    assert [o.status for o in outcomes] == ["completed"], [o.reason for o in outcomes]
    assert "mine.py" in RunStore(tmp_path / "ray").row(outcomes[0].run_id)["loss_code"]
