"""Stop what a local Ray left running once the seqbench process that started it is gone.

``ray.shutdown()`` runs on a normal exit and, through the signal handlers the Ray executor
installs, on SIGTERM/SIGHUP/Ctrl-C; nothing runs in a process killed with SIGKILL, and Ray's
agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) and idle workers then outlive it.
This small watcher, started alongside, finds Ray's processes two ways and stops them once the
driver has exited (Linux ``/proc``; elsewhere it does nothing):

* every process of the start inherits the environment variable ``OWNER_VARIABLE`` with a value
  unique to that start; but a process that renames itself (``setproctitle``, as Ray's agents and
  workers do) may overwrite the memory ``/proc/PID/environ`` shows, so the mark alone can miss it;
* so while the driver lives the watcher also records its descendants every half second, as
  (pid, start time) so that a recycled pid is never mistaken for one of them.

Run as ``python -m seqbench.execution.ray_reaper DRIVER_PID VALUE``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Set
from pathlib import Path

OWNER_VARIABLE = "SEQBENCH_RAY_OWNER"
GRACE_SECONDS = 3.0
POLL_SECONDS = 0.5
QUIET_SECONDS = 2.0  # a sweep is repeated until nothing was found for this long
SWEEP_LIMIT_SECONDS = 60.0

ProcessKey = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of ``pid`` from /proc/PID/stat, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19])


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").glob("[0-9]*")]


def descendants(root: int) -> set[ProcessKey]:
    """Every live process below ``root`` in the process tree."""
    parent_of: dict[int, int] = {}
    started: dict[int, int] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None:
            parent_of[pid], started[pid] = stat
    children: dict[int, list[int]] = {}
    for pid, parent in parent_of.items():
        children.setdefault(parent, []).append(pid)
    found: set[ProcessKey] = set()
    waiting = list(children.get(root, []))
    while waiting:
        pid = waiting.pop()
        found.add((pid, started[pid]))
        waiting.extend(children.get(pid, []))
    return found


def processes_with(value: str) -> list[int]:
    """Pids whose environment holds ``OWNER_VARIABLE=value`` (this process excluded)."""
    wanted = f"{OWNER_VARIABLE}={value}".encode()
    found = []
    for pid in _pids():
        try:
            if pid != os.getpid() and wanted in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:  # gone meanwhile, or another user's
            continue
    return found


def _still_running(recorded: Set[ProcessKey], value: str) -> list[int]:
    """Recorded descendants that are still the same process, and every marked process."""
    same = [pid for pid, started in recorded if (stat := _stat(pid)) is not None and stat[1] == started]
    return sorted((set(same) | set(processes_with(value))) - {os.getpid()})


def _signal_all(pids: list[int], number: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, number)
        except OSError:
            continue


def reap(value: str, recorded: Set[ProcessKey] = frozenset()) -> None:
    """SIGTERM every process of the Ray start ``value`` (marked or recorded), SIGKILL what is left
    after a grace period; repeat until no such process has been seen for ``QUIET_SECONDS``, since
    a dying process may have forked one more child."""
    deadline = time.monotonic() + SWEEP_LIMIT_SECONDS
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        left = _still_running(recorded, value)
        if not left:
            if time.monotonic() - quiet_since >= QUIET_SECONDS:
                return
            time.sleep(POLL_SECONDS)
            continue
        _signal_all(left, signal.SIGTERM)
        grace_end = time.monotonic() + GRACE_SECONDS
        while _still_running(recorded, value) and time.monotonic() < grace_end:
            time.sleep(0.1)
        _signal_all(_still_running(recorded, value), signal.SIGKILL)
        recorded = set(recorded) | {key for pid in processes_with(value) for key in descendants(pid)}
        quiet_since = time.monotonic()


def _alive(pid: int) -> bool:
    """False once ``pid`` has exited: a killed driver stays a zombie until its parent waits."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def main(driver: int, value: str) -> None:
    recorded: set[ProcessKey] = descendants(driver)
    print("watching", flush=True)  # for whoever waits on the first record (stdout is /dev/null in use)
    while _alive(driver):
        recorded |= descendants(driver)
        time.sleep(POLL_SECONDS)
    reap(value, recorded)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
