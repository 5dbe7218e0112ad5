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

import dataclasses
import multiprocessing
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from seqbench.configure import make_config
from seqbench.events import EventKind
from seqbench.execution import workers
from seqbench.execution.executor import Executor
from seqbench.execution.grid import run_grid
from seqbench.execution.planned import plan_run
from seqbench.execution.processes import available_cores
from seqbench.storage.store import RunStore
from seqbench.tuning.studies import (
    Study,
    Update,
    append_trial,
    best_overrides,
    draw_trial,
    load_trials,
    record_trial,
    retrain_best,
    run_study,
    start_study,
)


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
                if workers.poll(worker, _notify(updates[index])):
                    workers.reap(running.pop(index))
                    errors += _failure(worker, studies[index])
    except BaseException:
        indices = list(running)
        workers.stop([running[i] for i in indices], [_notify(updates[i]) for i in indices])
        raise
    if errors:
        raise errors[0]
    return [load_trials(results, study.study_id) for study in studies]


def run_studies_through(
    executor: Executor,
    studies: Sequence[Study],
    trials: int,
    data_dir: Path,
    results: Path,
    mirror: Path | None = None,
    updates: Sequence[Update | None] = (),
    retrain_seeds: Sequence[int] = (),
) -> list[pd.DataFrame]:
    """The same studies through any executor (``--executor ray``: a cluster), in waves.

    Each wave draws the next trial of every unfinished study here, with its pruning rule
    (:mod:`seqbench.training.prune_rule`), and hands the wave's runs to ``executor`` at once; a
    study's trial n is still drawn from its trials 0..n-1 only, so the trials are those of
    :func:`run_studies`. A wave lasts as long as its longest trial. Then the chosen configs are
    retrained with ``retrain_seeds`` as one grid (stored runs are not trained again).
    """
    updates = list(updates) or [None] * len(studies)
    tables = [start_study(results, study) for study in studies]
    while wave := _draw_wave(executor, studies, tables, trials, results, updates):
        _train_wave(executor, wave, studies, tables, trials, data_dir, results, mirror, updates)
    budgeted = [table[table["number"] < trials] for table in tables]
    retrain = [make_config(None, best_overrides(study, table) | {"seed": seed})
               for study, table in zip(studies, budgeted) if (table["state"] == "completed").any() for seed in retrain_seeds]
    if retrain:
        run_grid(retrain, data_dir, results, executor, mirror, update=_retrain_events(studies, updates))
    return [load_trials(results, study.study_id) for study in studies]


def _draw_wave(executor: Executor, studies: Sequence[Study], tables: list[pd.DataFrame], trials: int, results: Path,
               updates: list[Update | None]) -> dict[str, tuple[int, Any]]:
    """The next trial to train of every unfinished study, by run id (trials whose config is
    stored already are recorded on the way, as one study at a time records them)."""
    store, wave = RunStore(results), {}
    for index, study in enumerate(studies):
        while len(tables[index]) < trials:
            draw = draw_trial(study, tables[index], store, executor.device_type)
            if draw.known is None:
                wave[draw.run_id] = (index, draw)
                info: dict[str, Any] = {"loss": study.loss, "trial": draw.number, "params": draw.params, "run_id": draw.run_id}
                _notify(updates[index])(EventKind.TRIAL_START, info)
                break
            tables[index] = _append(results, study, tables[index], draw.known, trials, updates[index])
    return wave


def _train_wave(executor: Executor, wave: dict[str, tuple[int, Any]], studies: Sequence[Study], tables: list[pd.DataFrame],
                trials: int, data_dir: Path, results: Path, mirror: Path | None, updates: list[Update | None]) -> None:
    """Train the wave's trials at once (each under its pruning rule) and record them."""
    runs = [dataclasses.replace(plan_run(draw.config, executor.device_type(draw.config)), pruning=draw.rule) for _, draw in wave.values()]
    started = time.perf_counter()
    outcomes = {o.run_id: o for o in executor.run(runs, data_dir, results, mirror, _dispatch(wave, studies, updates))}
    store = RunStore(results)
    for run_id, (index, draw) in wave.items():
        outcome = outcomes.get(run_id)
        wall = outcome.seconds if outcome is not None and outcome.seconds else time.perf_counter() - started
        record = record_trial(studies[index], draw, store, wall, outcome.reason if outcome else "")
        tables[index] = _append(results, studies[index], tables[index], record, trials, updates[index])


def _append(results: Path, study: Study, table: pd.DataFrame, record: dict[str, Any], trials: int, update: Update | None) -> pd.DataFrame:
    table = append_trial(results, study, table, record)
    _notify(update)(EventKind.TRIAL, {"loss": study.loss, "trials": trials} | record)
    return table


def _dispatch(wave: dict[str, tuple[int, Any]], studies: Sequence[Study], updates: list[Update | None]) -> Update:
    """One executor callback for a wave: each run's events to its study's callback."""

    def dispatch(kind: EventKind, info: dict[str, Any]) -> None:
        entry = wave.get(info.get("run_id", ""))
        if entry is not None:
            index, draw = entry
            _notify(updates[index])(kind, info | {"loss": studies[index].loss, "trial": draw.number})

    return dispatch


def _retrain_events(studies: Sequence[Study], updates: list[Update | None]) -> Update:
    """The retrain grid's events to the callback of the study of the run's loss."""
    by_cell = {(s.dataset, s.model, s.loss): u for s, u in zip(studies, updates)}

    def forward(kind: EventKind, info: dict[str, Any]) -> None:
        for (dataset, model, loss), update in by_cell.items():
            if update is not None and str(info.get("label", "")).startswith(f"{dataset}/{model}/{loss}"):
                update(kind, info | {"loss": loss})
                return

    return forward


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


def _notify(update: Update | None) -> Update:
    return update if update is not None else (lambda kind, info: None)


def _failure(worker: workers.Worker, study: Study) -> list[BaseException]:
    """What went wrong in a finished worker (nothing if it completed its study)."""
    if worker.error is not None:
        return [worker.error]
    if worker.interrupted:
        return [KeyboardInterrupt()]
    if not worker.answered:
        return [RuntimeError(f"the {study.loss} study's worker process died ({worker.why_gone()}); run the command again to resume it")]
    return []
