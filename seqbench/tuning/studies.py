"""Equal-budget hyper-parameter tuning: per loss one Optuna study, every trial a stored run.

For each loss the same number of trials over the shared spaces plus the loss's own
(``seqbench/space.py``, ``Loss.space``), a seeded TPE sampler and a median pruner on the
validation metric per epoch. Selection reads validation metrics only: a trial's value is the run's
``valid_<metric>`` after its best epoch is restored, and the pruner sees the per-epoch validation
values the trainer reports through its progress callback.

Every trial is an ordinary run in the run store (run id from its config), so a config the sampler
proposes twice is trained once. The study state (trial number -> run id, params, value, state)
lives in ``<results>/studies/<study_id>/trials.parquet``, rewritten atomically after each trial.

Resumable and deterministic: trial ``n`` is drawn by a TPE sampler seeded with (seed, n) from a
study rebuilt out of trials 0..n-1 as stored. Trial ``n`` therefore does not depend on whether the
study ran in one go or was interrupted, and the same command twice trains nothing new.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from seqbench.atomic import atomic_file
from seqbench.configure import make_config
from seqbench.errors import InputError, RuntimeFailure
from seqbench.events import EventKind, Progress
from seqbench.execution.planned import local_device_type, plan_run
from seqbench.losses.aliases import spellings
from seqbench.losses.registry import loss_class
from seqbench.models.registry import default_params
from seqbench.space import SHARED_SPACE, Space, cap_at_catalogue
from seqbench.storage.layout import ResultsLayout
from seqbench.storage.store import RunStore
from seqbench.training.prune_rule import PruneRule
from seqbench.training.trainer import train_run
from seqbench.tuning.pruning import median_rule

PRUNERS = ("median", "none")
TRIAL_COLUMNS = [
    "number", "run_id", "state", "value", "params_json", "intermediate_json", "epochs_run", "best_epoch",
    "train_seconds", "wall_seconds", "reused", "reason",
]
Update = Progress  # the trainer's progress callback, forwarded with the trial's details


def require_optuna() -> Any:
    try:
        import optuna  # optional: optuna
    except ImportError:
        raise InputError("seqbench tune needs Optuna: pip install 'seqbench[tune]' (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass(frozen=True)
class TuneSettings:
    """How the search runs, besides the space; all of it is part of the study id."""

    metric: str = "NDCG@10"  # validation metric maximised and pruned on
    random_trials: int = 4  # TPE's first trials are drawn at random (Optuna's n_startup_trials)
    pruner: str = "median"  # median | none
    prune_after_trials: int = 3  # the median pruner waits for this many finished trials
    prune_warmup_epochs: int = 5  # ... and never prunes before this epoch

    def __post_init__(self) -> None:
        if self.pruner not in PRUNERS:
            raise InputError(f"unknown pruner '{self.pruner}': choose one of {', '.join(PRUNERS)}")
        if self.random_trials < 1 or self.prune_after_trials < 0 or self.prune_warmup_epochs < 0:
            raise InputError("random_trials must be >= 1, prune_after_trials and prune_warmup_epochs >= 0")


@dataclass
class Study:
    """One loss's study: the fixed part of every trial's config and the space searched."""

    dataset: str
    model: str
    loss: str
    seed: int
    base: dict[str, Any]  # fixed overrides of every trial (--epochs, --set), without the searched keys
    space: tuple[Space, ...]
    settings: TuneSettings = field(default_factory=TuneSettings)

    @property
    def study_id(self) -> str:
        payload = {
            "dataset": self.dataset, "model": self.model, "loss": self.loss, "seed": self.seed,
            "base": self.base, "space": [s.describe() for s in self.space], "settings": dataclasses.asdict(self.settings),
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{self.dataset}-{self.model}-{self.loss}-s{self.seed}-{digest}"

    def trial_overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        """The full overrides of a trial (or of the chosen config): ``make_config(None, this)``."""
        return self.base | {"dataset": self.dataset, "model": self.model, "loss": self.loss} | params

    @property
    def max_epochs(self) -> int:
        """Every trial's epoch budget (the budget table multiplies it by the trials)."""
        return make_config(None, self.trial_overrides({})).epochs

    def best(self, trials: pd.DataFrame) -> dict[str, Any]:
        return best_trial(trials)


def best_trial(trials: pd.DataFrame) -> dict[str, Any]:
    """The completed trial with the highest validation value (ties: the earliest trial)."""
    completed = trials[trials["state"] == "completed"]
    if completed.empty:
        raise RuntimeFailure("no trial of the study completed (all pruned or failed): give more --trials or --epochs")
    ranked = completed.sort_values(["value", "number"], ascending=[False, True], kind="mergesort")
    return ranked.iloc[0].to_dict()


# --- the space of a study ------------------------------------------------------------------------
def applicable_space(model: str, loss: str, num_items: int | None = None) -> tuple[Space, ...]:
    """Shared spaces the model has a field for, then the loss's own, capped at a catalogue of
    ``num_items`` (no more negatives than items: beyond N they only repeat)."""
    model_fields = set(default_params(model))
    shared = tuple(s for s in SHARED_SPACE if s.scope()[0] != "model" or s.scope()[1] in model_fields)
    own = tuple(loss_class(loss).space)
    return shared + (own if num_items is None else tuple(cap_at_catalogue(s, num_items) for s in own))


def _spellings(space: Space, model: str, loss: str) -> set[str]:
    """Every --set key that sets the same config field as ``space`` (then it is fixed, not searched)."""
    scope, name = space.scope()
    if not scope:
        return {name}
    owner = loss if scope == "loss" else model
    keys = spellings(name)  # num_negatives is also K
    return {space.name, *keys, *(f"{prefix}.{key}" for key in keys for prefix in (scope, owner))}


def plan_study(dataset: str, model: str, loss: str, seed: int, overrides: dict[str, Any], settings: TuneSettings,
               num_items: int | None = None) -> Study:
    """The study of one loss; a key the user fixed with --set is taken out of the search.
    ``num_items``: the data set's catalogue size, which caps the item-counting spaces."""
    given = set(overrides)
    space = tuple(s for s in applicable_space(model, loss, num_items) if not (_spellings(s, model, loss) & given))
    return Study(dataset, model, loss, seed, study_base(overrides), space, settings)


def study_base(overrides: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in overrides.items() if key not in ("dataset", "model", "loss", "seed")}


# --- the study table -------------------------------------------------------------------------------
def study_dir(results: Path, study_id: str) -> Path:
    return ResultsLayout(results).studies / study_id


def load_trials(results: Path, study_id: str) -> pd.DataFrame:
    path = study_dir(results, study_id) / "trials.parquet"
    if not path.is_file():
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    return pq.read_table(path).to_pandas()


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    with atomic_file(path) as tmp:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)


def _write_meta(results: Path, study: Study) -> None:
    path = study_dir(results, study.study_id) / "study.parquet"
    if path.is_file():
        return
    meta = {
        "study_id": study.study_id, "dataset": study.dataset, "model": study.model, "loss": study.loss, "seed": study.seed,
        "base_json": _json(study.base),
        "space_json": json.dumps([s.describe() for s in study.space]),
        "settings_json": json.dumps(dataclasses.asdict(study.settings)),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_table(pd.DataFrame([meta]), path)


def _json(base: dict[str, Any]) -> str:
    return json.dumps(base, sort_keys=True, default=str)


def load_meta(results: Path) -> pd.DataFrame:
    """One row per stored study (its ``study.parquet``)."""
    files = sorted(ResultsLayout(results).studies.glob("*/study.parquet"))
    return pd.concat([pq.read_table(path).to_pandas() for path in files], ignore_index=True) if files else pd.DataFrame()


def study_from_meta(row: dict[str, Any]) -> Study:
    space = tuple(_space_from(d) for d in json.loads(row["space_json"]))
    return Study(row["dataset"], row["model"], row["loss"], int(row["seed"]), json.loads(row["base_json"]), space,
                 TuneSettings(**json.loads(row["settings_json"])))


def _space_from(described: dict[str, Any]) -> Space:
    if "choices" in described:
        return Space(described["name"], choices=tuple(described["choices"]))
    return Space(described["name"], described["low"], described["high"], log=described["log"], integer=described["kind"] == "int")


# --- one trial --------------------------------------------------------------------------------------
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


def _in_trial(study: Study, number: int, update: Update | None) -> Update | None:
    return (lambda event, info: update(event, info | {"loss": study.loss, "trial": number})) if update else None


def run_trial(study: Study, trials: pd.DataFrame, data_dir: Path, results: Path, mirror: Path | None, update: Update | None) -> dict[str, Any]:
    """Draw trial number ``len(trials)``, train it here unless its run is stored, return its table row."""
    store = RunStore(results)
    draw = draw_trial(study, trials, store)
    if draw.known is not None:
        return draw.known
    forward = _in_trial(study, draw.number, update)
    if forward is not None:
        forward(EventKind.TRIAL_START, {"params": draw.params, "run_id": draw.run_id})
    started = time.perf_counter()
    with contextlib.suppress(RuntimeFailure):  # NaN or out of memory: stored as a failed run, a failed trial here
        train_run(draw.config, data_dir, results, mirror, draw.rule.callback(forward) if draw.rule else forward)
    return record_trial(study, draw, store, time.perf_counter() - started)


def start_study(results: Path, study: Study) -> pd.DataFrame:
    """Record the study's description (once) and return its stored trials (none for a new one)."""
    _write_meta(results, study)
    return load_trials(results, study.study_id)


def append_trial(results: Path, study: Study, table: pd.DataFrame, record: dict[str, Any]) -> pd.DataFrame:
    """``table`` plus one trial's row, written (atomically) as the study's table."""
    table = pd.concat([table, pd.DataFrame([record])], ignore_index=True) if len(table) else pd.DataFrame([record])
    _write_table(table, study_dir(results, study.study_id) / "trials.parquet")
    return table


def run_study(study: Study, trials: int, data_dir: Path, results: Path, mirror: Path | None = None, update: Update | None = None) -> pd.DataFrame:
    """Bring ``study`` to ``trials`` trials (continuing a stored one); returns its trial table."""
    if trials < 1:
        raise InputError(f"--trials must be >= 1, got {trials}")
    require_optuna()
    table = start_study(results, study)
    while len(table) < trials:
        record = run_trial(study, table, data_dir, results, mirror, update)
        table = append_trial(results, study, table, record)
        if update is not None:
            update(EventKind.TRIAL, {"loss": study.loss, "trials": trials} | record)
    return table


# --- what a study chose --------------------------------------------------------------------------
def best_overrides(study: Study, trials: pd.DataFrame) -> dict[str, Any]:
    """The chosen config as overrides (no seed): ``make_config(None, overrides | {"seed": s})``."""
    return study.trial_overrides(json.loads(best_trial(trials)["params_json"]))


def retrain_best(
    study: Study,
    trials: pd.DataFrame,
    seeds: list[int],
    data_dir: Path,
    results: Path,
    mirror: Path | None = None,
    update: Update | None = None,
) -> pd.DataFrame:
    """The chosen config trained with each seed (stored runs are reused), without pruning."""
    overrides, store, rows = best_overrides(study, trials), RunStore(results), []
    for seed in seeds:
        config = make_config(None, overrides | {"seed": seed})
        run_id = plan_run(config).run_id
        reused = store.has(run_id) and store.row(run_id).get("status") == "completed"
        if not reused:
            forward = (lambda event, info, s=seed: update(event, info | {"loss": study.loss, "retrain_seed": s})) if update else None
            train_run(config, data_dir, results, mirror, forward)
        row = store.row(run_id)
        rows.append({"loss": study.loss, "seed": seed, "run_id": run_id, "status": row["status"], "reused": reused}
                    | {key: row.get(key) for key in (f"valid_{study.settings.metric}", f"test_{study.settings.metric}")})
    return pd.DataFrame(rows)


def tuned_configs(
    results: Path,
    dataset: str,
    model: str,
    losses: list[str],
    seed: int | None = None,
    overrides: dict[str, Any] | None = None,
    settings: TuneSettings | None = None,
    num_items: int | None = None,
) -> dict[str, dict[str, Any]]:
    """The chosen config of each loss's stored study, as overrides without a seed.

    For ``compare --tune``: ``make_config(None, overrides | {"seed": s})`` is the tuned run. With
    ``overrides`` (the tune command's --epochs/--set) the study is the exact one that command
    made (exactly, with the data set's ``num_items``; else by its overrides, seed and settings);
    without, the one stored study of that (data set, model, loss[, seed]). Several matching
    studies are an input error, never a silent pick.
    """
    meta = load_meta(results)
    chosen: dict[str, dict[str, Any]] = {}
    for loss in losses:
        rows = meta[(meta["dataset"] == dataset) & (meta["model"] == model) & (meta["loss"] == loss)] if not meta.empty else meta
        if overrides is not None and num_items is not None:  # the command's exact study
            wanted = plan_study(dataset, model, loss, seed or 0, dict(overrides), settings or TuneSettings(), num_items).study_id
            rows = rows[rows["study_id"] == wanted] if not rows.empty else rows
        elif overrides is not None and not rows.empty:  # its base and settings (the space may be capped at an unknown N)
            rows = rows[(rows["seed"] == (seed or 0)) & (rows["base_json"] == _json(study_base(dict(overrides))))
                        & (rows["settings_json"] == json.dumps(dataclasses.asdict(settings or TuneSettings())))]
        elif seed is not None and not rows.empty:
            rows = rows[rows["seed"] == seed]
        if rows.empty:
            raise InputError(f"no stored study for {dataset}/{model}/{loss} in {results}: run `seqbench tune --losses {loss}` first")
        if len(rows) > 1:
            raise InputError(
                f"{len(rows)} studies for {dataset}/{model}/{loss} ({', '.join(rows['study_id'])}): pass the tune command's seed and overrides"
            )
        study = study_from_meta(rows.iloc[0].to_dict())
        chosen[loss] = best_overrides(study, load_trials(results, study.study_id))
    return chosen
