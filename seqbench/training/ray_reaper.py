"""Stop what a local Ray left running once the seqbench process that started it is gone.

``ray.shutdown()`` runs on a normal exit and, through the signal handlers the Ray executor
installs, on SIGTERM/SIGHUP/Ctrl-C; nothing runs in a process killed with SIGKILL, and Ray's
agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) and idle workers then outlive it.
Every process of a local Ray seqbench starts inherits the environment variable ``OWNER_VARIABLE``
with a value unique to that start; this small watcher, started alongside, waits for the driver
to exit and then terminates every process that still carries the value (Linux ``/proc``; elsewhere
it does nothing). Run as ``python -m seqbench.training.ray_reaper DRIVER_PID VALUE``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

OWNER_VARIABLE = "SEQBENCH_RAY_OWNER"
GRACE_SECONDS = 3.0


def processes_with(value: str) -> list[int]:
    """Pids whose environment holds ``OWNER_VARIABLE=value`` (this process excluded)."""
    wanted = f"{OWNER_VARIABLE}={value}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0") and int(entry.name) != os.getpid():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or another user's
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(value: str) -> None:
    """SIGTERM every process of the Ray start ``value``; SIGKILL what is left after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_with(value):
            try:
                os.kill(pid, sig)
            except OSError:
                continue
        deadline = time.monotonic() + GRACE_SECONDS
        while processes_with(value) and time.monotonic() < deadline:
            time.sleep(0.1)


def main(driver: int, value: str) -> None:
    while _alive(driver):
        time.sleep(0.5)
    reap(value)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
