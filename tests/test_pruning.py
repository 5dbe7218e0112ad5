"""The tuner's precomputed pruning rule decides as Optuna's median pruner does, epoch by epoch."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from seqbench.events import EventKind
from seqbench.tuning.pruning import median_rule

optuna = pytest.importorskip("optuna")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def random_study(rng: np.random.Generator) -> tuple[pd.DataFrame, list[float]]:
    """Finished trials (completed, pruned) with validation curves, and the next trial's curve."""
    rows = []
    for number in range(int(rng.integers(0, 7))):
        length = int(rng.integers(1, 12))
        curve = rng.uniform(0, 0.05, length)
        curve[rng.uniform(size=length) < 0.1] = np.nan  # an evaluation that produced no number
        state = "completed" if rng.uniform() < 0.7 else "pruned"
        rows.append({"number": number, "state": state,
                     "intermediate_json": json.dumps({str(e + 1): float(v) for e, v in enumerate(curve)})})
    nxt = rng.uniform(0, 0.05, int(rng.integers(1, 12)))
    nxt[rng.uniform(size=len(nxt)) < 0.05] = np.nan
    return pd.DataFrame(rows, columns=["number", "state", "intermediate_json"]), [float(v) for v in nxt]


def optuna_stop(trials: pd.DataFrame, curve: list[float], warmup: int, after: int, epochs: int) -> int | None:
    """The epoch at which Optuna's MedianPruner prunes the new trial (None: it runs to the end)."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=after, n_warmup_steps=warmup))
    states = {"completed": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}
    distribution = optuna.distributions.FloatDistribution(0, 1)
    for row in trials.itertuples():
        values = {int(k): v for k, v in json.loads(row.intermediate_json).items()}
        study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": distribution}, state=states[row.state],
                                                  value=0.0 if row.state == "completed" else None, intermediate_values=values))
    trial = study.ask({"x": distribution})
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
        if epoch < epochs and trial.should_prune():
            return epoch
    return None


def rule_stop(trials: pd.DataFrame, curve: list[float], warmup: int, after: int, epochs: int) -> int | None:
    from seqbench.events import StopRun

    rule = median_rule(trials, "NDCG@10", warmup, after)
    if rule is None:
        return None
    callback = rule.callback()
    callback(EventKind.START, {"epochs": epochs})
    for epoch, value in enumerate(curve, start=1):
        try:
            callback(EventKind.EPOCH, {"epoch": epoch, "valid_NDCG@10": value})
        except StopRun:
            return epoch
    return None


@pytest.mark.parametrize("seed", range(300))
def test_the_rule_prunes_at_the_same_epoch_as_optunas_median_pruner(seed: int) -> None:
    rng = np.random.default_rng(seed)
    trials, curve = random_study(rng)
    warmup, after = int(rng.integers(0, 6)), int(rng.integers(0, 4))
    epochs = len(curve) + int(rng.integers(0, 2))  # sometimes the curve reaches the last epoch
    assert rule_stop(trials, curve, warmup, after, epochs) == optuna_stop(trials, curve, warmup, after, epochs)


def test_the_rule_travels_as_plain_data() -> None:
    import pickle

    trials = pd.DataFrame([{"number": 0, "state": "completed", "intermediate_json": json.dumps({"1": 0.1, "2": 0.2})}])
    rule = median_rule(trials, "NDCG@10", 1, 1)
    assert pickle.loads(pickle.dumps(rule)) == rule and rule.medians == {1: 0.1, 2: 0.2}
    assert median_rule(trials.iloc[:0], "NDCG@10", 1, 0) is None  # nothing completed: nothing to compare with
