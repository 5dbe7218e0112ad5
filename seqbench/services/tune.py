"""The ``tune`` service: every loss of one (data set, model) tuned with the same budget, then the
budget, the chosen hyper-parameters and (optionally) the chosen configs retrained per seed.

The studies themselves live in :mod:`seqbench.training.tune`; the tables and the figure in
:mod:`seqbench.reporting.tuning`; this module joins them for ``seqbench tune``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from seqbench.reporting.tuning import budget_table, cell_figures, chosen_table
from seqbench.training.tune import (
    Study,
    TuneSettings,
    Update,
    best_overrides,
    plan_study,
    require_optuna,
    retrain_best,
    run_study,
)


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
) -> TuneReport:
    """Tune every loss with the same budget, then report (and optionally retrain) the chosen configs."""
    from seqbench.training.trainer import load_dataset, make_config

    require_optuna()
    settings = settings or TuneSettings()
    num_items = load_dataset(dataset, data_dir, mirror).num_items  # a missing data set fails before any training
    planned = {loss: plan_study(dataset, model, loss, seed, dict(overrides or {}), settings, num_items) for loss in losses}
    for study in planned.values():  # a bad --set fails before any training, too
        make_config(None, study.trial_overrides({}) | {"seed": seed})
    studies = {loss: (study, run_study(study, trials, data_dir, results, mirror, update)) for loss, study in planned.items()}
    best = {loss: best_overrides(study, table) for loss, (study, table) in studies.items()}
    retrained = pd.concat(
        [retrain_best(study, table, retrain_seeds, data_dir, results, mirror, update) for study, table in studies.values()],
        ignore_index=True,
    ) if retrain_seeds else pd.DataFrame()
    figures = cell_figures(list(studies.values()), Path(plots)) if plots else []
    listed = list(studies.values())
    return TuneReport(studies, budget_table(listed), chosen_table(listed), best, retrained, figures)
