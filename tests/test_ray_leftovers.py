"""A local Ray that `seqbench compare --executor ray` started leaves no process behind, even when
the driver is killed with SIGKILL (nothing runs in it then: the watcher, ray_reaper, stops them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("ray")
if not Path("/proc").is_dir():
    pytest.skip("needs /proc to find the processes", allow_module_level=True)

from conftest import write_toy_dataset

REPO = Path(__file__).resolve().parents[1]


def ours(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process that inherited the test's marker variable."""
    wanted = f"SEQBENCH_TEST_OWNER={marker}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
        except OSError:
            continue
    return found


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def test_no_ray_process_outlives_a_killed_driver(tmp_path: Path) -> None:
    # SIGKILL is the hard case (nothing runs in the driver); a clean exit and SIGTERM go through
    # Ray's own shutdown, and the watcher sweeps after them too.
    write_toy_dataset(tmp_path / "data")
    marker = uuid.uuid4().hex
    env = os.environ | {"PYTHONPATH": str(REPO), "SEQBENCH_TEST_OWNER": marker, "RAY_USAGE_STATS_ENABLED": "0"}
    args = [sys.executable, "-m", "seqbench", "compare", "--executor", "ray", "--datasets", "toy", "--models", "gru4rec",
            "--losses", "bce", "--epochs", "100000", "--set", "patience=100000", "--set", "max_len=10", "--set", "threads=1",
            "--data-dir", str(tmp_path / "data"), "--results", str(tmp_path / "results"), "-q"]
    driver = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        training = wait_for(lambda: any(cmd.startswith("ray::seqbench:") for _, cmd in ours(marker)), 240)
        assert training, f"no Ray task started: {driver.poll()} {driver.stderr.read().decode()[-2000:] if driver.poll() is not None else ''}"
        assert len(ours(marker)) >= 4  # driver, watcher, Ray's servers and the task's worker
        driver.send_signal(signal.SIGKILL)
        assert driver.wait(timeout=60) == -signal.SIGKILL
        left = wait_for(lambda: not ours(marker), 60)
        assert left, f"left running: {ours(marker)}"
    finally:
        if driver.poll() is None:
            driver.kill()
        for pid, _ in ours(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


FAKE_DRIVER = """
import os, select, subprocess, sys, time
clean = {k: v for k, v in os.environ.items() if k != "SEQBENCH_RAY_OWNER"}
# a child that carries no mark, as a Ray agent whose setproctitle overwrote /proc/PID/environ
unmarked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=clean)
watcher = subprocess.Popen([sys.executable, "-m", "seqbench.execution.ray_reaper", str(os.getpid()), sys.argv[1]],
                           env=clean, start_new_session=True, stdout=subprocess.PIPE, text=True)
ready, _, _ = select.select([watcher.stdout], [], [], 60)  # its first record of this process's children is taken
assert ready and watcher.stdout.readline().strip() == "watching"
print(unmarked.pid, watcher.pid, flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_the_watcher_stops_a_descendant_that_lost_its_mark(tmp_path: Path) -> None:
    value = uuid.uuid4().hex
    env = os.environ | {"PYTHONPATH": str(REPO), "SEQBENCH_RAY_OWNER": value}
    driver = subprocess.Popen([sys.executable, "-c", FAKE_DRIVER, value], env=env, stdout=subprocess.PIPE, text=True)
    unmarked, watcher = (int(pid) for pid in driver.stdout.readline().split())
    try:
        driver.kill()  # the watcher has recorded the unmarked child (the fake driver waited for it)
        driver.wait(timeout=30)
        assert wait_for(lambda: not _running(unmarked), 30), "the unmarked descendant outlived the driver"
        assert wait_for(lambda: not _running(watcher), 30), "the watcher did not finish"
    finally:
        for pid in (unmarked, watcher):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
