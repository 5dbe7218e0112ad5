"""The median pruning rule of a study's next trial, computed from its completed trials (the rule
itself, applied epoch by epoch wherever the run trains, is :class:`seqbench.training.prune_rule.PruneRule`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from seqbench.training.prune_rule import PruneRule


def median_rule(trials: pd.DataFrame, metric: str, warmup: int, after_trials: int) -> PruneRule | None:
    """The rule for the next trial of a study whose trials so far are ``trials`` (the study
    table); None while fewer than ``after_trials`` trials (at least one) have completed."""
    completed = trials[trials["state"] == "completed"] if len(trials) else trials
    if len(completed) == 0 or len(completed) < after_trials:
        return None
    by_epoch: dict[int, list[float]] = {}
    for curve in completed["intermediate_json"]:
        for epoch, value in json.loads(curve).items():
            by_epoch.setdefault(int(epoch), []).append(float(value))
    medians = {epoch: float(np.nanpercentile(values, 50)) for epoch, values in by_epoch.items() if not all(map(math.isnan, values))}
    return PruneRule(metric, warmup, medians)
