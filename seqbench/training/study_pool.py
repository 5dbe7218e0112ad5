"""Several tuning studies at once, one process each (``compare --tune`` with ``--jobs``).

The trials of one study run in order (trial n is proposed from trials 0..n-1), but the studies of
different losses are independent, so on a machine with several cores they run side by side.
Each study is seeded and writes only its own folder and its own runs, so running it in a worker
gives the same trials, in the same order, with the same numbers as running it here.

Workers are started with ``spawn`` (a fresh interpreter: no forked torch state). A run whose
``threads`` is 0 gets ``cores // jobs`` threads in its worker, as ``--jobs`` does for the grid.
The workers' progress events come back through a queue and reach the caller's callback for
that study; an error in a study is raised here once the running studies are done.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import pandas as pd

from seqbench.training.tune import Study, Update, load_trials, retrain_best, run_study

POLL_SECONDS = 0.2


def run_studies(
    studies: Sequence[Study],
    trials: int,
    data_dir: Path,
    results: Path,
    mirror: Path | None = None,
    updates: Sequence[Update | None] = (),
    jobs: int = 1,
    retrain_seeds: Sequence[int] = (),
) -> list[pd.DataFrame]:
    """Bring every study to ``trials`` trials (then retrain its best config with ``retrain_seeds``),
    up to ``jobs`` studies at a time; returns the trial tables in the order of ``studies``."""
    updates = list(updates) or [None] * len(studies)
    if jobs <= 1 or len(studies) <= 1:
        return [_one(study, trials, data_dir, results, mirror, update, list(retrain_seeds)) for study, update in zip(studies, updates)]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        events = manager.Queue()
        with ProcessPoolExecutor(max_workers=min(jobs, len(studies)), mp_context=context,
                                 initializer=_pin_threads, initargs=(jobs,)) as pool:
            pending: set[Future[None]] = {
                pool.submit(_worker, index, study, trials, data_dir, results, mirror, list(retrain_seeds), events, updates[index] is not None)
                for index, study in enumerate(studies)
            }
            errors: list[BaseException] = []
            while pending:
                done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                _forward(events, updates)
                errors += [error for future in done if (error := future.exception()) is not None]
            _forward(events, updates)
        if errors:
            raise errors[0]
    return [load_trials(results, study.study_id) for study in studies]


def _one(study: Study, trials: int, data_dir: Path, results: Path, mirror: Path | None, update: Update | None,
         retrain_seeds: list[int]) -> pd.DataFrame:
    table = run_study(study, trials, data_dir, results, mirror, update)
    completed = table[table["number"] < trials]
    if retrain_seeds and (completed["state"] == "completed").any():
        retrain_best(study, completed, retrain_seeds, data_dir, results, mirror, update)
    return table


def _pin_threads(jobs: int) -> None:
    """A worker's default thread count: its share of the cores (a run's own ``threads`` wins)."""
    import torch

    from seqbench.training.parallel import available_cores

    torch.set_num_threads(max(1, available_cores() // jobs))


def _worker(index: int, study: Study, trials: int, data_dir: Path, results: Path, mirror: Path | None,
            retrain_seeds: list[int], events: Any, report: bool) -> None:
    send = (lambda kind, info: events.put((index, kind, info))) if report else None
    _one(study, trials, data_dir, results, mirror, send, retrain_seeds)


def _forward(events: Any, updates: list[Update | None]) -> None:
    while True:
        try:
            index, kind, info = events.get_nowait()
        except queue_module.Empty:
            return
        update = updates[index]
        if update is not None:
            update(kind, info)
