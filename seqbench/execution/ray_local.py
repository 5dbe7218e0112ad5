"""A local Ray never outlives seqbench: its processes are marked and watched, its signals handled."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

from seqbench.execution.ray_reaper import OWNER_VARIABLE


def own_local_ray() -> None:
    """Mark the processes of the local Ray about to start, and watch for this process's end.

    Ray's own atexit hook shuts it down on a normal exit; the signal handlers below cover
    SIGTERM/SIGHUP; the watcher (:mod:`seqbench.execution.ray_reaper`) covers SIGKILL.
    """

    value = f"{os.getpid()}-{secrets.token_hex(6)}"
    os.environ[OWNER_VARIABLE] = value  # inherited by every process ray.init starts
    if not Path("/proc").is_dir():
        return
    environment = {key: val for key, val in os.environ.items() if key != OWNER_VARIABLE}
    subprocess.Popen(
        [sys.executable, "-m", "seqbench.execution.ray_reaper", str(os.getpid()), value],
        env=environment | {"PYTHONPATH": os.pathsep.join(sys.path)}, start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
    )


def stop_on_signals() -> None:
    """SIGHUP (a closed terminal) ends the driver as Ctrl-C does: tasks cancelled, written runs
    kept, Ray shut down by its exit hook; the default action would skip every exit hook. Ray's
    ``init`` installs its own SIGTERM handler, which exits through the same hooks; it is kept."""

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(number: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {number}")

    for number in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(number) in (signal.SIG_DFL, None):
            signal.signal(number, interrupt)
