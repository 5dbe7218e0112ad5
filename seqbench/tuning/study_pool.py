"""Several tuning studies at once, one process each (``compare --tune`` with ``--jobs``).

The trials of one study run in order (trial n is proposed from trials 0..n-1), but the studies of
different losses are independent, so on a machine with several cores they run side by side.
Each study is seeded and writes only its own folder and its own runs, so running it in a worker
gives the same trials, in the same order, with the same numbers as running it here.

Workers are started with ``spawn`` (a fresh interpreter: no forked torch state). A run whose
``threads`` is 0 gets ``cores // jobs`` threads in its worker, as ``--jobs`` does for the grid.
The workers' progress events come back through their pipes and reach the caller's callback for
that study; an error in a study is raised here once the running studies are done. The worker
processes are :mod:`seqbench.execution.workers`': Ctrl-C here stops them with their trials stored
as ``interrupted`` (the next run of the command draws the same trial again), and a worker whose
driver was killed exits by itself.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from seqbench.execution import workers
from seqbench.execution.processes import available_cores
from seqbench.tuning.studies import Study, Update, load_trials, retrain_best
from seqbench.tuning.trials import notifier, run_study


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
    threads = max(1, available_cores() // jobs)  # a worker's default; a run's own ``threads`` wins
    todo = list(range(len(studies)))
    running: dict[int, workers.Worker] = {}
    errors: list[BaseException] = []
    try:
        while todo or running:
            while todo and len(running) < jobs:
                index = todo.pop(0)
                args = (studies[index], trials, data_dir, results, mirror, list(retrain_seeds), updates[index] is not None)
                with workers.signals_deferred():  # started and registered before a Ctrl-C is handled
                    running[index] = workers.start(context, _study_in_worker, args, f"seqbench:study:{studies[index].loss}", threads)
            workers.wait_any(list(running.values()))
            for index, worker in list(running.items()):
                if workers.poll(worker, notifier(updates[index])):
                    workers.reap(running.pop(index))
                    errors += _failure(worker, studies[index])
    except BaseException as cause:
        indices = list(running)
        workers.stop([running[i] for i in indices], [notifier(updates[i]) for i in indices], cause=cause)
        raise
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


def _study_in_worker(study: Study, trials: int, data_dir: Path, results: Path, mirror: Path | None,
                     retrain_seeds: list[int], report: bool, relay: Update) -> None:
    """What a worker process runs (:func:`seqbench.execution.workers.start`): one study, then its retrains."""
    _one(study, trials, data_dir, results, mirror, relay if report else None, retrain_seeds)


def _failure(worker: workers.Worker, study: Study) -> list[BaseException]:
    """What went wrong in a finished worker (nothing if it completed its study)."""
    if worker.error is not None:
        return [worker.error]
    if worker.interrupted:
        return [KeyboardInterrupt()]
    if not worker.answered:
        return [RuntimeError(f"the {study.loss} study's worker process died ({worker.why_gone()}); run the command again to resume it")]
    return []
