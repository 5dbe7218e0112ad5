"""Tuning studies in the store: one process per study, damaged tables skipped, links never followed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import seqbench
from seqbench.errors import InputError
from seqbench.storage.layout import ResultsLayout
from seqbench.storage.locks import exclusive

pytest.importorskip("optuna")
SMALL = {"batch_size": 32, "max_len": 10, "eval_batch_size": 64}


def tune(toy_data: Path, results: Path, trials: int = 2) -> object:
    return seqbench.tune("toy", "gru4rec", "bce", trials=trials, epochs=1, sets=SMALL, data_dir=toy_data, results=results)


def study_folder(results: Path) -> Path:
    (folder,) = ResultsLayout(results).studies.iterdir()
    return folder


def test_a_damaged_trial_table_is_skipped_with_a_warning_and_the_study_goes_on(
    toy_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tune(toy_data, tmp_path)
    trials = study_folder(tmp_path) / "trials.parquet"
    trials.write_bytes(trials.read_bytes()[:40])  # truncated: once a crash of `tune`
    meta = study_folder(tmp_path) / "study.parquet"
    meta.write_bytes(b"garbage")
    report = tune(toy_data, tmp_path)
    assert int(report.budget["trials"].iloc[0]) == 2  # type: ignore[attr-defined]
    err = capfd.readouterr().err
    assert f"warning: skipped damaged {trials}" in err and f"warning: skipped damaged {meta}" in err


def test_a_symlinked_study_folder_is_refused_and_nothing_is_written_outside(toy_data: Path, tmp_path: Path) -> None:
    results = tmp_path / "r"
    tune(toy_data, results, trials=1)
    folder = study_folder(results)
    outside = tmp_path / "outside"
    outside.mkdir()
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    folder.symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="is a symbolic link"):
        tune(toy_data, results, trials=1)
    assert list(outside.iterdir()) == []


def test_a_second_tune_of_the_same_study_waits_for_the_first_then_continues(
    toy_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tune(toy_data, tmp_path, trials=1)
    study_id = study_folder(tmp_path).name
    lock = ResultsLayout(tmp_path).lock(f"study-{study_id}")
    finished: list[object] = []
    with exclusive(lock):  # another process tuning this study
        second = threading.Thread(target=lambda: finished.append(tune(toy_data, tmp_path, trials=2)))
        second.start()
        deadline = time.monotonic() + 60
        while "being tuned by another process" not in capfd.readouterr().err:
            assert time.monotonic() < deadline and second.is_alive()
            time.sleep(0.1)
        assert not finished  # it waits while the lock is held
    second.join(timeout=120)
    assert finished and int(finished[0].budget["trials"].iloc[0]) == 2  # type: ignore[attr-defined]
