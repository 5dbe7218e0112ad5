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

import dataclasses
import datetime as dt
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from seqbench.atomic import atomic_file
from seqbench.configure import make_config
from seqbench.errors import InputError, RuntimeFailure
from seqbench.events import Progress
from seqbench.execution.planned import plan_run
from seqbench.losses.aliases import spellings
from seqbench.losses.registry import loss_class
from seqbench.models.registry import default_params
from seqbench.space import SHARED_SPACE, Space, cap_at_catalogue
from seqbench.storage.layout import ResultsLayout
from seqbench.storage.store import RunStore
from seqbench.training.trainer import train_run

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
    """A study's folder; a symlink planted there (or at ``studies/``) is refused, never followed:
    the study's tables would be written outside the results directory."""
    folder = ResultsLayout(results).studies / study_id
    for path in (folder.parent, folder, folder / "trials.parquet", folder / "study.parquet"):
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link: seqbench never follows links inside its store; "
                             f"remove it (`rm {path}`) and run again")
    return folder


def _warn_damaged(path: Path, error: BaseException, what: str) -> None:
    reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    sys.stderr.write(f"warning: skipped damaged {path} ({reason}): {what}\n")


def load_trials(results: Path, study_id: str) -> pd.DataFrame:
    """A study's trials; a damaged table is skipped with a warning (the study starts again, and
    trials whose runs are stored are read back, not trained again)."""
    path = study_dir(results, study_id) / "trials.parquet"
    if not path.is_file():
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    try:
        table = pq.read_table(path).to_pandas()
        missing = [column for column in TRIAL_COLUMNS if column not in table.columns]
        if missing or not pd.api.types.is_integer_dtype(table["number"]):
            raise ValueError(f"missing or mistyped columns {', '.join(missing) or 'number'}")
    except Exception as error:  # truncated, garbage, another schema: never fatal for the whole tune
        _warn_damaged(path, error, "the study starts again and reuses the runs it stored")
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    return table


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    with atomic_file(path) as tmp:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)


def _write_meta(results: Path, study: Study) -> None:
    path = study_dir(results, study.study_id) / "study.parquet"
    if path.is_file() and _readable_meta(path) is not None:
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


META_COLUMNS = ("study_id", "dataset", "model", "loss", "seed", "base_json", "space_json", "settings_json")


def _readable_meta(path: Path) -> pd.DataFrame | None:
    try:
        frame = pq.read_table(path).to_pandas()
        missing = [column for column in META_COLUMNS if column not in frame.columns]
        if missing or len(frame) != 1:
            raise ValueError(f"missing columns {', '.join(missing)}" if missing else f"{len(frame)} rows, not 1")
    except Exception as error:
        _warn_damaged(path, error, "rewritten when its study is tuned again")
        return None
    return frame


def load_meta(results: Path) -> pd.DataFrame:
    """One row per stored study (its ``study.parquet``); a damaged one is skipped with a warning,
    as is a study folder that is a symbolic link."""
    files = [path for path in sorted(ResultsLayout(results).studies.glob("*/study.parquet"))
             if not (path.is_symlink() or path.parent.is_symlink())]
    frames = [frame for frame in (_readable_meta(path) for path in files) if frame is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def study_from_meta(row: dict[str, Any]) -> Study:
    space = tuple(_space_from(d) for d in json.loads(row["space_json"]))
    return Study(row["dataset"], row["model"], row["loss"], int(row["seed"]), json.loads(row["base_json"]), space,
                 TuneSettings(**json.loads(row["settings_json"])))


def _space_from(described: dict[str, Any]) -> Space:
    if "choices" in described:
        return Space(described["name"], choices=tuple(described["choices"]))
    return Space(described["name"], described["low"], described["high"], log=described["log"], integer=described["kind"] == "int")


def start_study(results: Path, study: Study) -> pd.DataFrame:
    """Record the study's description (once) and return its stored trials (none for a new one)."""
    _write_meta(results, study)
    return load_trials(results, study.study_id)


def append_trial(results: Path, study: Study, table: pd.DataFrame, record: dict[str, Any]) -> pd.DataFrame:
    """``table`` plus one trial's row, written (atomically) as the study's table."""
    table = pd.concat([table, pd.DataFrame([record])], ignore_index=True) if len(table) else pd.DataFrame([record])
    _write_table(table, study_dir(results, study.study_id) / "trials.parquet")
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
