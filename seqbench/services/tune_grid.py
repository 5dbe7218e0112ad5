"""``compare --tune T``: every cell of the grid tuned with the same budget, then shown beside its default.

For each (data set, model, loss) of the grid one study of :mod:`seqbench.tuning.studies` with T
trials over that loss's space (capped at the data set's catalogue), the same maximum epochs and the
grid's ``--set`` keys fixed; the best trial by validation is retrained with the grid's seeds. The
grid then gets two named settings, "default" (the grid's own configs) and "tuned" (each loss's
chosen config), so the improvement grid, its intervals, the verdicts and the sensitivity table
("does the verdict survive tuning?") come from the same code as every other grid.

The studies' seed is the grid's first seed, so trial configs are trained with it and the retrain
with that seed is the best trial's own run (stored, not trained again). A study that holds more
than T trials (an earlier ``--tune 24``) is read up to trial T only: trial n depends on trials
0..n-1 alone, so its first T trials are exactly the T-trial study, and the budget stays T.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from seqbench.config import RunConfig
from seqbench.configure import check_catalogues, make_config
from seqbench.data.prepare import ensure_prepared
from seqbench.data.sequences import is_prepared, read_meta
from seqbench.errors import InputError, RuntimeFailure
from seqbench.execution.executor import Executor
from seqbench.execution.order import estimate, seconds_per_epoch
from seqbench.execution.planned import plan_run
from seqbench.reporting.study import StudyRequest
from seqbench.reporting.tuning import budget_table, cell_figures, chosen_table
from seqbench.storage.store import RunStore
from seqbench.tuning.studies import (
    Study,
    TuneSettings,
    Update,
    best_overrides,
    load_trials,
    plan_study,
    require_optuna,
    retrain_best,
)
from seqbench.tuning.study_pool import run_studies
from seqbench.tuning.trials import run_studies_through, run_study

DEFAULT, TUNED = "default", "tuned"


@dataclass
class GridTuning:
    """What the grid's studies spent and chose (the study tables join these as tables and notes)."""

    trials: int
    studies: list[tuple[Study, pd.DataFrame]]
    budget: pd.DataFrame
    chosen: pd.DataFrame
    tuned: list[RunConfig]
    figures: list[Path] = field(default_factory=list)
    trial_run_ids: frozenset[str] = frozenset()
    notes: list[str] = field(default_factory=list)


def tune_grid(
    request: StudyRequest,
    trials: int,
    overrides: dict[str, Any],
    data_dir: Path,
    results: Path,
    mirror: Path | None = None,
    train: bool = True,
    figure_dirs: Sequence[Path | None] = (),
    settings: TuneSettings | None = None,
    update: Update | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
) -> StudyRequest:
    """``request`` with the settings "default" and "tuned" and the tuning tables (``compare --tune``).

    ``overrides``: the grid's --epochs/--set/--preset, the fixed part of every trial (a key there is
    not searched). ``train=False`` (``--no-train``) reads stored studies and runs only.
    ``figure_dirs``: where the validation-per-trial figures go (``--plots``, the report's figures).
    ``jobs``: studies trained at once, one process each (the same trials and numbers as one at a time).
    ``executor``: train the trials and retrains through it instead (``--executor ray``: a cluster),
    wave by wave (:func:`~seqbench.tuning.trials.run_studies_through`), with the same trials.
    """
    require_optuna()
    if trials < 1:
        raise InputError(f"--tune must be >= 1 trial per loss, got {trials}")
    if request.selection != "grid":
        raise InputError("--tune shows exactly the default and the tuned configs: drop --runs stored")
    one_config_per_cell(request.configs)

    check_catalogues(request.configs, data_dir, mirror)  # the default grid trains after the studies: fail first
    settings = settings or TuneSettings()
    seeds = list(request.names["seeds"])
    items = {dataset: catalogue_size(dataset, data_dir, mirror) for dataset in request.names["datasets"]}
    cells = [
        (plan_study(dataset, model, loss, seeds[0], dict(overrides), settings, items[dataset]),
         _in_cell(update, dataset, model))
        for dataset in request.names["datasets"] for model in request.names["models"] for loss in request.names["losses"]
    ]
    if train:  # every study (and its retrains) first, side by side; the loop below then reads them

        listed, updates = [study for study, _ in cells], [u for _, u in cells]
        if executor is not None:
            run_studies_through(executor, listed, trials, data_dir, results, mirror, updates, seeds)
        else:
            run_studies(listed, trials, data_dir, results, mirror, updates, jobs, seeds)
    studies, tuned, notes = [], [], []
    for study, cell_update in cells:
        table = _trials(study, trials, data_dir, results, mirror, train, cell_update)
        if len(table) < trials:
            notes.append(f"{_where(study)}: the stored study has {len(table)} of {trials} trials "
                         f"(--no-train reads it as it is; drop --no-train to finish it).")
        if table.empty:
            continue
        studies.append((study, table))
        try:
            chosen = best_overrides(study, table)
        except RuntimeFailure:
            notes.append(f"{_where(study)}: no trial completed (all pruned or failed), so no tuned column: "
                         "give more --tune trials or --epochs.")
            continue
        if train:
            retrain_best(study, table, seeds, data_dir, results, mirror, cell_update)
        tuned += [_config(chosen, seed) for seed in seeds]
    if not studies:
        raise InputError(f"no stored tuning study for this grid in {results}: run `seqbench compare --tune {trials}` without --no-train")
    selectable = [(study, table) for study, table in studies if (table["state"] == "completed").any()]
    figures = [path for directory in dict.fromkeys(figure_dirs) if directory is not None
               for path in cell_figures(studies, Path(directory))]
    tuning = GridTuning(trials, studies, budget_table(studies), chosen_table(selectable), tuned, figures,
                        frozenset(run_id for _, table in studies for run_id in table["run_id"]), notes)
    return dataclasses.replace(request, arms={DEFAULT: list(request.configs), TUNED: tuned}, tuning=tuning)


def plan_tuning(configs: Sequence[RunConfig], names: dict[str, list[Any]], trials: int, overrides: dict[str, Any],
                data_dir: Path, results: Path, settings: TuneSettings | None = None) -> list[dict[str, Any]]:
    """``compare --tune --dry-run``: per cell the trials stored and to run, the retrain runs to train,
    and an upper bound of their training time (every trial and retrain at the full max epochs,
    at the seconds per epoch of the most similar stored run; pruning and early stopping only cut it)."""
    one_config_per_cell(configs)
    settings, seeds, store = settings or TuneSettings(), list(names["seeds"]), RunStore(results)
    rates = seconds_per_epoch(store.table())
    defaults = {(c.dataset, c.model, c.loss): c for c in configs}
    rows = []
    for dataset in names["datasets"]:
        # Not prepared yet: the space is planned uncapped (the study id may then differ from the one run).
        num_items = int(read_meta(dataset, data_dir)["num_items"]) if is_prepared(dataset, data_dir) else None
        for model in names["models"]:
            for loss in names["losses"]:
                study = plan_study(dataset, model, loss, seeds[0], dict(overrides), settings, num_items)
                stored = load_trials(results, study.study_id)
                stored = stored[stored["number"] < trials]
                retrain = _retrains_left(study, stored, trials, seeds, store)
                per_run, basis = estimate(defaults[(dataset, model, loss)], rates)
                todo = trials - len(stored) + retrain
                rows.append({"dataset": dataset, "model": model, "loss": loss, "study_id": study.study_id,
                             "trials_stored": len(stored), "trials_to_run": trials - len(stored), "retrain_runs": retrain,
                             "estimated_seconds": per_run * todo if per_run is not None else (0.0 if todo == 0 else None),
                             "estimate_basis": basis if todo else ""})
    return rows


def _retrains_left(study: Study, stored: pd.DataFrame, trials: int, seeds: list[int], store: RunStore) -> int:
    """Retrain runs still to train: known exactly once the study is complete, else every seed but
    the study's own (that run is the best trial's)."""
    if len(stored) < trials or not (stored["state"] == "completed").any():
        return len([seed for seed in seeds if seed != study.seed])

    run_ids = [plan_run(_config(best_overrides(study, stored), seed)).run_id for seed in seeds]
    return sum(1 for run_id in run_ids if not (store.has(run_id) and store.row(run_id).get("status") == "completed"))


def one_config_per_cell(configs: Sequence[RunConfig]) -> None:
    """A sweep (``--set patience=10,40``) has several defaults per cell: tuning searches those keys instead."""
    payloads: dict[tuple[str, str, str], set[str]] = {}
    for config in configs:
        payload = {k: v for k, v in config.hash_payload().items() if k != "seed"}
        payloads.setdefault((config.dataset, config.model, config.loss), set()).add(repr(sorted(payload.items())))
    swept = [cell for cell, found in payloads.items() if len(found) > 1]
    if swept:
        raise InputError(f"--tune tunes one default config per cell, but {'/'.join(swept[0])} has {len(payloads[swept[0]])} "
                         "(a comma list in --set): drop the sweep and let the tuner search that key")


def catalogue_size(dataset: str, data_dir: Path, mirror: Path | None) -> int:
    ensure_prepared(dataset, data_dir, mirror)
    return int(read_meta(dataset, data_dir)["num_items"])


def _trials(study: Study, trials: int, data_dir: Path, results: Path, mirror: Path | None, train: bool,
            update: Update | None) -> pd.DataFrame:
    """The study's first ``trials`` trials, run or resumed (``train``), else as stored."""
    table = run_study(study, trials, data_dir, results, mirror, update) if train else load_trials(results, study.study_id)
    return table[table["number"] < trials].reset_index(drop=True)


def _config(overrides: dict[str, Any], seed: int) -> RunConfig:
    return make_config(None, overrides | {"seed": seed})


def _in_cell(update: Update | None, dataset: str, model: str) -> Update | None:
    """Progress events tagged with their cell, so a multi-model grid's lines say where they are."""
    if update is None:
        return None
    return lambda event, info: update(event, info | {"dataset": dataset, "model": model})


def _where(study: Study) -> str:
    return f"{study.dataset}/{study.model}/{study.loss}"


__all__ = ["DEFAULT", "TUNED", "GridTuning", "one_config_per_cell", "plan_tuning", "tune_grid"]
