"""The ``tune`` service: every loss of one (data set, model) tuned with the same budget, then the
budget, the chosen hyper-parameters and (optionally) the chosen configs retrained per seed.

The studies themselves live in :mod:`seqbench.tuning.studies`; the tables and the figure in
:mod:`seqbench.reporting.tuning`; this module joins them for ``seqbench tune``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from seqbench.configure import make_config
from seqbench.data.prepare import load_dataset
from seqbench.errors import InputError
from seqbench.execution.executor import Executor
from seqbench.execution.processes import available_cores, check_jobs
from seqbench.reporting.tuning import budget_table, cell_figures, chosen_table
from seqbench.storage.store import RunStore
from seqbench.tuning.studies import (
    Study,
    TuneSettings,
    Update,
    best_overrides,
    plan_study,
    require_optuna,
    retrain_best,
)
from seqbench.tuning.study_pool import run_studies
from seqbench.tuning.trials import run_studies_through


@dataclass
class TuneReport:
    studies: dict[str, tuple[Study, pd.DataFrame]]
    budget: pd.DataFrame
    chosen: pd.DataFrame
    best: dict[str, dict[str, Any]]
    retrained: pd.DataFrame
    figures: list[Path]


def tune(
    dataset: str,
    model: str,
    losses: list[str],
    trials: int,
    data_dir: Path,
    results: Path,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    settings: TuneSettings | None = None,
    retrain_seeds: list[int] | None = None,
    plots: Path | None = None,
    mirror: Path | None = None,
    update: Update | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
) -> TuneReport:
    """Tune every loss with the same budget, then report (and optionally retrain) the chosen configs.

    ``jobs`` studies run at once, one process each (:mod:`seqbench.tuning.study_pool`), with the
    same trials and choices as one after another; with ``executor`` (Ray) the trials and retrains
    train through it instead, wave by wave, again with the same trials. Only the first ``trials`` trials of a stored
    study count (a study once run longer keeps its extra trials but they do not choose).
    """
    require_optuna()
    if trials < 1:
        raise InputError(f"--trials must be >= 1, got {trials}")
    settings = settings or TuneSettings()
    RunStore(results).check_writable()  # a --results that names a file fails now, not in the first trial
    num_items = load_dataset(dataset, data_dir, mirror).num_items  # a missing data set fails before any training
    planned = {loss: plan_study(dataset, model, loss, seed, dict(overrides or {}), settings, num_items) for loss in losses}
    configs = [make_config(None, study.trial_overrides({}) | {"seed": seed}) for study in planned.values()]  # a bad --set fails here
    check_jobs(jobs, configs, available_cores())
    listed, updates = list(planned.values()), [update] * len(planned)
    if executor is not None:
        tables = run_studies_through(executor, listed, trials, data_dir, results, mirror, updates, retrain_seeds or [])
    else:
        tables = run_studies(listed, trials, data_dir, results, mirror, updates, jobs, retrain_seeds or [])
    studies = {loss: (study, table[table["number"] < trials]) for (loss, study), table in zip(planned.items(), tables)}
    best = {loss: best_overrides(study, table) for loss, (study, table) in studies.items()}
    retrained = pd.concat(
        [retrain_best(study, table, retrain_seeds, data_dir, results, mirror, update) for study, table in studies.values()],
        ignore_index=True,
    ) if retrain_seeds else pd.DataFrame()  # the runs were trained above: read back, not trained again
    cells = list(studies.values())  # (study, its budgeted trials) per loss
    figures = cell_figures(cells, Path(plots)) if plots else []
    return TuneReport(studies, budget_table(cells), chosen_table(cells), best, retrained, figures)
