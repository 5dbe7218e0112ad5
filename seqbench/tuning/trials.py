"""The one trial loop of tuning: draw each study's next trial, train it through an executor
(in this process, worker processes, a Ray cluster), record it in the study's table.

Trial ``n`` of a study is drawn by a TPE sampler seeded with (seed, n) from a study rebuilt out of
its stored trials 0..n-1, with the pruning rule computed from those trials
(:mod:`seqbench.tuning.pruning`); the rule travels with the planned run to wherever it trains,
so every executor prunes the same way. Studies advance together in waves (one trial of each per
wave); a study alone is a wave of one, trained in this process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqbench.configure import make_config
from seqbench.errors import InputError
from seqbench.events import EventKind
from seqbench.execution.executor import Executor, InProcessExecutor
from seqbench.execution.grid import run_grid
from seqbench.execution.planned import local_device_type, plan_run
from seqbench.storage.layout import ResultsLayout
from seqbench.storage.locks import exclusive
from seqbench.storage.store import RunStore
from seqbench.training.prune_rule import PruneRule
from seqbench.tuning.pruning import median_rule
from seqbench.tuning.studies import (
    Study,
    Update,
    append_trial,
    best_overrides,
    load_trials,
    require_optuna,
    start_study,
)


def _sampler_seed(seed: int, number: int) -> int:
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _optuna_study(study: Study, trials: pd.DataFrame, number: int) -> Any:
    """An in-memory Optuna study holding the stored trials, with the sampler for trial ``number``."""
    optuna = require_optuna()
    settings = study.settings
    sampler = optuna.samplers.TPESampler(seed=_sampler_seed(study.seed, number), n_startup_trials=settings.random_trials)
    # Pruning is decided by the trial's own rule (training/pruning.py), not by this study.
    frozen = optuna.create_study(direction="maximize", sampler=sampler)
    distributions = {s.name: s.distribution() for s in study.space}
    states = {"completed": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED, "failed": optuna.trial.TrialState.FAIL}
    for row in trials.itertuples():
        state = states[row.state]
        frozen.add_trial(optuna.trial.create_trial(
            params=json.loads(row.params_json),
            distributions=distributions,
            value=float(row.value) if state == optuna.trial.TrialState.COMPLETE else None,
            intermediate_values={int(k): v for k, v in json.loads(row.intermediate_json).items()},
            state=state,
        ))
    return frozen


def _record(number: int, params: dict[str, Any], row: dict[str, Any], epochs: pd.DataFrame, metric: str, wall: float, reused: bool) -> dict[str, Any]:
    """A study-table row from a stored run: only validation columns are read."""
    status = str(row.get("status"))
    state = status if status in ("completed", "pruned") else "failed"
    column = f"valid_{metric}"
    curve = epochs[["epoch", column]].dropna() if column in epochs.columns else pd.DataFrame(columns=["epoch", column])
    intermediate = {str(int(e)): float(v) for e, v in zip(curve["epoch"], curve[column])}
    value = row.get(column)
    return {
        "number": number, "run_id": row["run_id"], "state": state,
        "value": float(value) if value is not None and state != "failed" else float("nan"),
        "params_json": json.dumps(params, sort_keys=True), "intermediate_json": json.dumps(intermediate),
        "epochs_run": int(row.get("epochs_run", 0)), "best_epoch": int(row.get("best_epoch", 0)),
        "train_seconds": float(row.get("train_seconds", 0.0)), "wall_seconds": wall, "reused": reused,
        "reason": str(row.get("reason", "")),
    }


def _stored_elsewhere(store: RunStore, run_id: str) -> bool:
    """A run of this config that ran its course (a pruned one was cut short by another study's
    pruner, whose other trials differ: that one is trained again here)."""
    return store.has(run_id) and store.row(run_id).get("status") in ("completed", "failed")


@dataclass
class Draw:
    """Trial ``number`` as drawn: its params, config and run id, the pruning rule it trains under,
    and its table row when that config was trained before (then it is not trained again)."""

    number: int
    params: dict[str, Any]
    config: Any  # RunConfig
    run_id: str
    rule: PruneRule | None
    known: dict[str, Any] | None = None


def draw_trial(study: Study, trials: pd.DataFrame, store: RunStore, device_of: Any = None) -> Draw:
    """Draw trial number ``len(trials)`` (``device_of(config)``: where it will train, for its run id)."""
    number = len(trials)
    frozen = _optuna_study(study, trials, number)
    params = dict(frozen.ask({s.name: s.distribution() for s in study.space}).params)
    config = make_config(None, study.trial_overrides(params) | {"seed": study.seed})
    run_id = plan_run(config, (device_of or local_device_type)(config)).run_id
    settings = study.settings
    rule = median_rule(trials, settings.metric, settings.prune_warmup_epochs, settings.prune_after_trials) if settings.pruner == "median" else None
    draw = Draw(number, params, config, run_id, rule)
    earlier = trials[trials["run_id"] == run_id] if len(trials) else trials
    if len(earlier):  # the sampler proposed this config before: the same trial again, not trained twice
        draw.known = earlier.iloc[0].to_dict() | {"number": number, "wall_seconds": 0.0, "reused": True}
    elif _stored_elsewhere(store, run_id):  # e.g. by `compare` or another study: read, not retrained
        draw.known = _record(number, params, store.row(run_id), store.epochs(run_id), settings.metric, 0.0, True)
    return draw


def record_trial(study: Study, draw: Draw, store: RunStore, wall: float, reason: str = "") -> dict[str, Any]:
    """The table row of a trained trial, from its stored run (a run that left nothing: failed)."""
    if store.has(draw.run_id):
        return _record(draw.number, draw.params, store.row(draw.run_id), store.epochs(draw.run_id), study.settings.metric, wall, False)
    row = {"run_id": draw.run_id, "status": "failed", "reason": reason or "the run left nothing in the store"}
    return _record(draw.number, draw.params, row, pd.DataFrame(), study.settings.metric, wall, False)


def run_study(study: Study, trials: int, data_dir: Path, results: Path, mirror: Path | None = None, update: Update | None = None) -> pd.DataFrame:
    """Bring ``study`` to ``trials`` trials (continuing a stored one) in this process; its trial table."""
    return run_studies_through(InProcessExecutor(), [study], trials, data_dir, results, mirror, [update])[0]


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
    if trials < 1:
        raise InputError(f"--trials must be >= 1, got {trials}")
    require_optuna()
    updates = list(updates) or [None] * len(studies)
    with contextlib.ExitStack() as held:
        # One process per study: a second `tune` of the same study waits, then continues its trials.
        for study in sorted(studies, key=lambda s: s.study_id):  # one order everywhere: no deadlock
            held.enter_context(exclusive(ResultsLayout(results).lock(f"study-{study.study_id}"), _waiting(study)))
        tables = [start_study(results, study) for study in studies]
        while wave := _draw_wave(executor, studies, tables, trials, results, updates):
            _train_wave(executor, wave, studies, tables, trials, data_dir, results, mirror, updates)
    budgeted = [table[table["number"] < trials] for table in tables]
    retrain = [make_config(None, best_overrides(study, table) | {"seed": seed})
               for study, table in zip(studies, budgeted) if (table["state"] == "completed").any() for seed in retrain_seeds]
    if retrain:
        run_grid(retrain, data_dir, results, executor, mirror, update=_retrain_events(studies, updates))
    return [load_trials(results, study.study_id) for study in studies]


def _waiting(study: Study) -> Callable[[], None]:
    def say() -> None:
        sys.stderr.write(f"study {study.study_id} is being tuned by another process: waiting for it\n")

    return say


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
                notifier(updates[index])(EventKind.TRIAL_START, info)
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
    notifier(update)(EventKind.TRIAL, {"loss": study.loss, "trials": trials} | record)
    return table


def _dispatch(wave: dict[str, tuple[int, Any]], studies: Sequence[Study], updates: list[Update | None]) -> Update:
    """One executor callback for a wave: each run's events to its study's callback."""

    def dispatch(kind: EventKind, info: dict[str, Any]) -> None:
        entry = wave.get(info.get("run_id", ""))
        if entry is not None:
            index, draw = entry
            notifier(updates[index])(kind, info | {"loss": studies[index].loss, "trial": draw.number})

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


def notifier(update: Update | None) -> Update:
    return update if update is not None else (lambda kind, info: None)
