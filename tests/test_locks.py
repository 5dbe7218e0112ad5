"""The per-run lock: exclusive across holders, a waiter is told once and gets the lock when the
holder ends, no lock file is left behind, a symlink planted as the lock is refused."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from seqbench.errors import InputError
from seqbench.storage.locks import exclusive


def test_a_second_holder_waits_then_holds_and_no_file_is_left(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "run.lock"
    order: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with exclusive(path):
            order.append("first in")
            first_in.set()
            time.sleep(0.5)
            order.append("first out")

    def second() -> None:
        first_in.wait(5)
        with exclusive(path, on_wait=lambda: order.append("waiting")):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order == ["first in", "waiting", "first out", "second in"]
    assert not path.exists()


def test_three_holders_in_turn_never_overlap(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    inside, overlaps = [0], []

    def hold() -> None:
        for _ in range(20):
            with exclusive(path):
                inside[0] += 1
                overlaps.append(inside[0])
                time.sleep(0.001)
                inside[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert max(overlaps) == 1 and len(overlaps) == 60


def test_a_symlink_planted_as_the_lock_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    (tmp_path / "locks").mkdir()
    os.symlink(target, tmp_path / "locks" / "run.lock")
    with pytest.raises(InputError, match="cannot lock"), exclusive(tmp_path / "locks" / "run.lock"):
        pass
    assert target.read_text() == "keep me"
