"""`compare --jobs N`: the process executor stores the same runs as one-at-a-time, runs them at
once, isolates a killed worker, stores interrupted runs on Ctrl-C and leaves no worker behind.

Workers are spawned processes: the stand-in worker functions below are module-level so that a
worker can import them, and they coordinate through marker files in a temporary directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.config import RunConfig
from seqbench.errors import InputError
from seqbench.execution.executor import RunOutcome
from seqbench.execution.planned import PlannedRun, run_label
from seqbench.execution.processes import ProcessExecutor
from seqbench.storage.store import RunStore

runner = CliRunner()
GRID = ["--datasets", "toy", "--seeds", "0", "--models", "gru4rec,sasrec", "--losses", "cce", "--epochs", "2", "--set", "max_len=10", "--set", "batch_size=64", "--set", "threads=1", "--quiet"]
BARRIER_SECONDS = 60.0


def fake_config(loss: str, seed: int = 0, threads: int = 0) -> RunConfig:
    return RunConfig(dataset="toy", model="gru4rec", loss=loss, seed=seed, epochs=1, device="cpu", threads=threads)


def markers_of(config: RunConfig) -> Path:
    return Path(config.model_params["markers"])


def meeting_worker(run: PlannedRun, data_dir: Path, results: Path, mirror: Path | None, update: Any) -> RunOutcome:
    """Leaves ``started-<loss>`` and waits until every run of the grid has started (or times out)."""
    config = run.config
    markers = markers_of(config)
    (markers / f"started-{config.loss}").touch()
    deadline = time.monotonic() + BARRIER_SECONDS
    while len(list(markers.glob("started-*"))) < int(config.model_params["meet"]):
        if time.monotonic() > deadline:
            return RunOutcome(config.run_id("cpu"), run_label(config), "failed", "the other runs never started alongside")
        time.sleep(0.05)
    return RunOutcome(config.run_id("cpu"), run_label(config), "completed", "", 0.0, {"threads": float(__import__("torch").get_num_threads())})


def dying_worker(run: PlannedRun, data_dir: Path, results: Path, mirror: Path | None, update: Any) -> RunOutcome:
    config = run.config
    update("run-start", {"run_id": config.run_id("cpu"), "label": run_label(config)})
    if config.loss == "ce":
        os.kill(os.getpid(), signal.SIGKILL)
    return RunOutcome(config.run_id("cpu"), run_label(config), "completed")


def sleeping_worker(run: PlannedRun, data_dir: Path, results: Path, mirror: Path | None, update: Any) -> RunOutcome:
    """Records its pid, then sleeps until stopped."""
    config = run.config
    (markers_of(config) / f"pid-{config.loss}").write_text(str(os.getpid()))
    while True:
        time.sleep(0.1)


def test_jobs_2_stores_the_same_runs_and_numbers_as_jobs_1(toy_data: Path, tmp_path: Path) -> None:
    tables = {}
    for jobs in ("1", "2"):
        results = tmp_path / f"jobs{jobs}"
        outcome = runner.invoke(app, ["compare", *GRID, "--jobs", jobs, "--data-dir", str(toy_data), "--results", str(results)])
        assert outcome.exit_code == 0, outcome.output
        tables[jobs] = RunStore(results).table().sort_values("run_id").reset_index(drop=True)
    one, two = tables["1"], tables["2"]
    assert len(one) == 2 and set(one["status"]) == {"completed"}
    assert list(one["run_id"]) == list(two["run_id"])
    metrics = [c for c in one.columns if c.startswith(("valid_", "test_"))]
    pd.testing.assert_frame_equal(one[metrics], two[metrics])  # bit for bit: same threads, same seeds
    for run_id in one["run_id"]:
        epochs = [pd.read_parquet(tmp_path / f"jobs{j}" / "runs" / run_id / "epochs.parquet") for j in ("1", "2")]
        pd.testing.assert_series_equal(epochs[0]["train_loss"], epochs[1]["train_loss"])


def test_two_jobs_train_at_once_on_their_share_of_the_cores(tmp_path: Path) -> None:
    configs = [fake_config(loss) for loss in ("bce", "ce")]
    for config in configs:
        config.model_params = {"markers": str(tmp_path), "meet": 2}
    events: list[tuple[str, dict[str, Any]]] = []
    outcomes = ProcessExecutor(2, meeting_worker, cores=2).run(configs, tmp_path, tmp_path / "r", None, lambda e, i: events.append((e, i)))
    assert [o.status for o in outcomes] == ["completed", "completed"], [o.reason for o in outcomes]
    assert [o.metrics["threads"] for o in outcomes] == [1.0, 1.0]  # threads=0 runs get cores // jobs
    assert sorted(i["label"] for e, i in events if e == "run-end") == sorted(run_label(c) for c in configs)
    assert multiprocessing.active_children() == []


def test_a_killed_worker_fails_its_run_and_the_grid_goes_on(tmp_path: Path) -> None:
    configs = [fake_config(loss) for loss in ("bce", "ce", "cce")]
    events: list[tuple[str, dict[str, Any]]] = []
    outcomes = ProcessExecutor(2, dying_worker, cores=2).run(configs, tmp_path, tmp_path / "r", None, lambda e, i: events.append((e, i)))
    assert [o.status for o in outcomes] == ["completed", "failed", "completed"]
    assert "killed by signal 9" in outcomes[1].reason
    ended = {i["label"]: i["status"] for e, i in events if e == "run-end"}
    assert ended[run_label(configs[1])] == "failed"  # the live table shows it failed, not running
    assert multiprocessing.active_children() == []


def test_ctrl_c_stores_the_running_runs_as_interrupted_and_reaps_every_worker(toy_data: Path, tmp_path: Path) -> None:
    from seqbench.configure import make_config

    configs = [
        make_config(None, {"dataset": "toy", "model": "gru4rec", "loss": loss, "epochs": 10_000, "patience": 10_000, "max_len": 10, "threads": 1, "device": "cpu"})
        for loss in ("bce", "ce", "cce")
    ]
    seen: set[str] = set()

    def interrupt_once_both_train(event: str, info: dict[str, Any]) -> None:
        if event == "epoch" and len(seen) < 2:
            seen.add(info["label"])
            if len(seen) == 2:
                raise KeyboardInterrupt  # once: a second Ctrl-C would kill the workers unsaved

    results = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        ProcessExecutor(2).run(configs, toy_data, results, None, interrupt_once_both_train)
    table = RunStore(results).table()
    assert sorted(table["status"]) == ["interrupted", "interrupted"]  # the third run never started
    assert set(table["loss"]) == {"bce", "ce"}
    assert set(table["reason"]) == {"interrupted by the user (Ctrl-C)"}  # the driver's cause, passed on
    assert multiprocessing.active_children() == []


def test_an_error_in_the_driver_stops_the_workers_as_terminated_not_as_ctrl_c(toy_data: Path, tmp_path: Path) -> None:
    from seqbench.configure import make_config
    from seqbench.errors import Terminated

    configs = [
        make_config(None, {"dataset": "toy", "model": "gru4rec", "loss": loss, "epochs": 10_000, "patience": 10_000, "max_len": 10, "threads": 1, "device": "cpu"})
        for loss in ("bce", "ce")
    ]
    seen: set[str] = set()

    def terminate_once_both_train(event: str, info: dict[str, Any]) -> None:
        if event == "epoch" and len(seen) < 2:
            seen.add(info["label"])
            if len(seen) == 2:
                raise Terminated  # what the driver's SIGTERM handler raises

    results = tmp_path / "r"
    with pytest.raises(Terminated):
        ProcessExecutor(2).run(configs, toy_data, results, None, terminate_once_both_train)
    table = RunStore(results).table()
    assert list(table["status"]) == ["interrupted", "interrupted"]
    assert set(table["reason"]) == {"terminated (SIGTERM)"}  # was "interrupted by the user (Ctrl-C)"


def start_driver(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """A driver process running two sleeping workers, and the workers' pids once both started."""
    script = textwrap.dedent(
        f"""
        import faulthandler, signal, sys
        faulthandler.enable()
        # As a terminal starts it: a harness started in the background (`cmd &`, nohup) passes
        # SIGINT on ignored, and an ignored SIGINT would make this simulated Ctrl-C a no-op.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_parallel import fake_config, sleeping_worker
        from seqbench.execution.processes import ProcessExecutor
        configs = [fake_config(loss) for loss in ("bce", "ce")]
        for config in configs:
            config.model_params = {{"markers": {str(tmp_path)!r}}}
        outcomes = ProcessExecutor(2, sleeping_worker, cores=2).run(configs, {str(tmp_path)!r}, {str(tmp_path / "r")!r}, None, None)
        """
    )
    driver = subprocess.Popen([sys.executable, "-c", script], env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + BARRIER_SECONDS
    while len(list(tmp_path.glob("pid-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(path.read_text()) for path in tmp_path.glob("pid-*")]
    assert len(pids) == 2
    return driver, pids


def finish(driver: subprocess.Popen, markers: Path, timeout: float) -> str:
    """The driver's stderr once it exited; on a timeout it and its workers are killed first, so
    a failing test leaves no process behind to slow the rest of the suite."""
    try:
        return driver.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        # The driver dumps its threads' stacks on SIGABRT (faulthandler): shown in the failure.
        driver.send_signal(signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            print(driver.communicate(timeout=10)[1])
        driver.kill()
        for path in markers.glob("pid-*"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(path.read_text()), signal.SIGKILL)
        raise


def wait_gone(pids: list[int], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(_alive(pid) for pid in pids)


def test_workers_exit_when_the_driver_is_killed(tmp_path: Path) -> None:
    driver, pids = start_driver(tmp_path)
    driver.kill()
    driver.wait()
    assert wait_gone(pids)


def test_ctrl_c_to_the_driver_stops_its_workers_and_exits(tmp_path: Path) -> None:
    driver, pids = start_driver(tmp_path)
    driver.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C delivers (workers ignore their own)
    stderr = finish(driver, tmp_path, timeout=90)
    assert driver.returncode != 0 and "KeyboardInterrupt" in stderr
    assert wait_gone(pids, seconds=1)  # reaped before the driver exited


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_default_jobs_follow_the_cores_and_pinned_threads() -> None:
    many = [fake_config("bce", seed) for seed in range(8)]
    assert ProcessExecutor(cores=4).resolve_jobs(many) == 4  # threads=0: one core each
    assert ProcessExecutor(cores=4).resolve_jobs([fake_config("bce", s, threads=2) for s in range(8)]) == 2
    assert ProcessExecutor(cores=4).resolve_jobs(many[:3]) == 3  # never more processes than runs
    with pytest.raises(InputError, match="--jobs 2 runs of threads=2 need 4 cores, this machine has 2"):
        ProcessExecutor(2, cores=2).resolve_jobs([fake_config("bce", threads=2)] * 2)


@pytest.mark.parametrize(("args", "message"), [(["--jobs", "0"], "--jobs must be >= 1"), (["--jobs", "2", "--executor", "ray"], "--jobs is for the local executor")])
def test_bad_jobs_exit_2(toy_data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    outcome = runner.invoke(app, ["compare", *GRID, *args, "--data-dir", str(toy_data), "--results", str(tmp_path / "r")])
    assert outcome.exit_code == 2
    assert message in outcome.output
    assert not (tmp_path / "r" / "runs").exists()


def test_the_live_table_counts_every_running_run() -> None:
    from seqbench.cli.grid_progress import GridProgress

    progress = GridProgress(["a", "b", "c"], quiet=True)
    for label in ("a", "b"):
        progress("run-start", {"label": label})
    table = progress._table()
    assert table.title == "seqbench compare (2 running)"
    assert [cell.plain if hasattr(cell, "plain") else cell for cell in table.columns[1]._cells].count("[cyan]running[/]") == 2


def test_ctrl_c_between_a_worker_start_and_its_registration_still_stops_it(tmp_path: Path) -> None:
    """A Ctrl-C that lands right after a worker process started, before the driver recorded it,
    is held until the worker is recorded: the stop reaches it and the driver exits (before, the
    unrecorded worker kept the exiting driver waiting forever)."""
    script = textwrap.dedent(
        f"""
        import faulthandler, os, signal, sys, time
        faulthandler.enable()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal starts it (see above)
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_parallel import fake_config, sleeping_worker
        from seqbench.execution.processes import ProcessExecutor

        class Interrupted(ProcessExecutor):
            def _start(self, *args, **kwargs):
                job = super()._start(*args, **kwargs)
                os.kill(os.getpid(), signal.SIGINT)  # the worst moment for a Ctrl-C
                time.sleep(1.0)
                return job

        configs = [fake_config("bce")]
        configs[0].model_params = {{"markers": {str(tmp_path)!r}}}
        Interrupted(2, sleeping_worker, cores=2).run(configs * 2, {str(tmp_path)!r}, {str(tmp_path / "r")!r}, None, None)
        """
    )
    driver = subprocess.Popen([sys.executable, "-c", script], env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])},
                              stderr=subprocess.PIPE, text=True)
    stderr = finish(driver, tmp_path, timeout=120)
    assert driver.returncode != 0 and "KeyboardInterrupt" in stderr
    pids = [int(path.read_text()) for path in tmp_path.glob("pid-*")]
    assert wait_gone(pids, seconds=5)


def test_a_pruned_trial_is_pruned_in_a_worker_process_too(toy_data: Path, tmp_path: Path) -> None:
    """A tuning trial's pruning rule travels with its planned run to the worker that trains it
    (before, workers got the bare config and trained every trial to the end, unpruned)."""
    from seqbench.configure import make_config
    from seqbench.execution.planned import plan_run
    from seqbench.training.prune_rule import PruneRule

    always_below = PruneRule("NDCG@10", warmup=1, medians={epoch: 2.0 for epoch in range(1, 5)})  # NDCG <= 1 < 2
    runs = [dataclasses.replace(plan_run(make_config(None, {"dataset": "toy", "model": "gru4rec", "loss": loss, "epochs": 4,
                                                             "max_len": 10, "batch_size": 64, "threads": 1, "device": "cpu"})),
                                pruning=always_below) for loss in ("bce", "ce")]
    outcomes = ProcessExecutor(2, cores=2).run(runs, toy_data, tmp_path / "r", None, None)
    assert [o.status for o in outcomes] == ["pruned", "pruned"], [o.reason for o in outcomes]
    assert [RunStore(tmp_path / "r").row(run.run_id)["epochs_run"] for run in runs] == [1, 1]


def test_workers_run_the_drivers_code_even_from_a_folder_holding_another_checkout(toy_data: Path, tmp_path: Path) -> None:
    # The fork server's `python -c` once put the current directory first on sys.path: run from a
    # folder holding another checkout, the workers imported that one's seqbench.
    checkout = tmp_path / "other-checkout"
    (checkout / "seqbench").mkdir(parents=True)
    (checkout / "seqbench" / "__init__.py").write_text('raise SystemExit("the wrong seqbench was imported")\n')
    script = Path(sys.executable).parent / "seqbench"  # the installed entry point, as a user runs it
    args = [str(script), "compare", "--datasets", "toy", "--models", "gru4rec", "--losses", "bce,ce", "--seeds", "0", "--epochs", "1", "--jobs", "2",
            "--set", "threads=1", "--set", "max_len=10", "--data-dir", str(toy_data), "--results", str(tmp_path / "r"), "--quiet"]
    done = subprocess.run(args, cwd=checkout, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "wrong seqbench" not in done.stderr
    assert set(RunStore(tmp_path / "r").table()["status"]) == {"completed"}
