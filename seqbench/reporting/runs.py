"""Shared helpers for reports: which runs count, how a loss variant is labelled, display names.

Every report reads the run table of :class:`seqbench.storage.store.RunStore` (one row per run) and
only ever uses ``completed`` runs: a failed or interrupted run has no trustworthy final metrics.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pandas as pd

from seqbench.config import RunConfig
from seqbench.errors import InputError
from seqbench.losses.cross_entropy import CeImpl
from seqbench.storage.records import json_object

METRICS: tuple[str, ...] = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20")
FRONTIER_METRIC = "NDCG@10"

# Registry name -> the spelling papers (and readers) use; unknown names are shown as stored.
DATASET_DISPLAY: dict[str, str] = {
    "beauty": "Beauty",
    "sports": "Sports",
    "toys": "Toys",
    "yelp": "Yelp",
    "lastfm": "LastFM",
    "ml-1m": "ML-1M",
    "synthetic": "Synthetic",
}
MODEL_DISPLAY: dict[str, str] = {
    "gru4rec": "GRU4Rec",
    "sasrec": "SASRec",
    "bert4rec": "BERT4Rec",
    "s3rec": "S3-Rec",
    "llamarec": "LlamaRec",
}
# Loss parameters that choose an implementation, not the maths: they never split a grid column.
IMPLEMENTATION_PARAMS: frozenset[str] = frozenset({"ce_impl", "chunk_size", "chunk_items", "chunk_rows"})


def dataset_display(name: str) -> str:
    return DATASET_DISPLAY.get(name, name)


def model_display(name: str) -> str:
    return MODEL_DISPLAY.get(name, name)


def completed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The completed runs of a run table, with a ``label`` column; InputError when there are none."""
    if runs is None or runs.empty or "status" not in runs.columns:
        raise InputError("no stored runs to report: train some first (drop --no-train) or point --results at a store")
    done = runs[runs["status"] == "completed"].reset_index(drop=True)
    if done.empty:
        raise InputError("no completed runs to report (only failed or interrupted ones): re-run them, e.g. with --retry-failed")
    return done.assign(label=loss_labels(done, with_impl=False))


def _params(text: Any) -> dict[str, Any]:
    """A stored JSON column (config, loss params) as a dict; anything unreadable is {}."""
    return json_object(text)


def loss_labels(runs: pd.DataFrame, with_impl: bool) -> pd.Series:
    """A label per run that tells loss variants apart.

    The label is the loss name plus, in brackets, the hyper-parameters that differ between runs of
    that loss in this table (``sampled-ce[num_negatives=64]``), so a grid expanded over a parameter
    list gets one column per value. With ``with_impl`` a CE run is also labelled with the
    implementation it ran (the ``ce_impl`` column: ``cce[chunked]``, ``cce[dense+chunked]`` when
    ``auto`` chose per batch; runs stored before the trainer resolved ``auto`` show ``[auto]``):
    it matters for memory, not for accuracy. Dense is the unlabelled baseline.
    """
    if runs.empty:
        return pd.Series([], dtype=object)
    params = [
        {k: v for k, v in _params(text).items() if k not in IMPLEMENTATION_PARAMS}
        for text in runs.get("loss_params_json", pd.Series([None] * len(runs)))
    ]
    losses = runs["loss"].astype(str).tolist()
    varying: dict[str, set[str]] = {}
    for loss in set(losses):
        mine = [p for p, name in zip(params, losses) if name == loss]
        keys = set().union(*mine) if mine else set()
        varying[loss] = {k for k in keys if len({json.dumps(p.get(k), sort_keys=True, default=str) for p in mine}) > 1}
    impls = runs["ce_impl"].fillna("").astype(str).tolist() if "ce_impl" in runs.columns else [""] * len(runs)
    labels = []
    for loss, p, impl in zip(losses, params, impls):
        parts = [f"{k}={p.get(k)}" for k in sorted(varying[loss])]
        if with_impl and impl not in ("", CeImpl.DENSE):
            parts.insert(0, impl)
        labels.append(f"{loss}[{','.join(parts)}]" if parts else loss)
    return pd.Series(labels, index=runs.index, dtype=object)


def one_run_per_seed(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Keep one run per (keys, seed): the newest.

    Two runs of the same loss variant and seed differ only in implementation (dense versus chunked
    CE, another device); counting both as seeds would shrink the std and inflate significance.
    """
    order = ["created_at"] if "created_at" in runs.columns else []
    ordered = runs.sort_values(order, kind="stable") if order else runs
    return ordered.drop_duplicates(subset=[*keys, "seed"], keep="last").reset_index(drop=True)


def metric_column(split: str, metric: str) -> str:
    return f"{split}_{metric}"


# Config fields that are grid axes (columns, rows, seeds) or only choose how a run is computed:
# they never make two runs of one cell "differently configured". ``code`` belongs to the loss and
# model axes (a plugin's source digest): runs of an edited plugin replace the older ones per seed.
NOT_A_SETTING: frozenset[str] = frozenset(
    {"dataset", "model", "loss", "seed", "loss_params", "device", "threads", "eval_batch_size", "code"}
)


@functools.cache
def _config_defaults() -> dict[str, Any]:
    """Every run-config field's default (a stored config leaves out fields added later)."""
    default = RunConfig()
    return {name: getattr(default, name) for name in RunConfig.__dataclass_fields__}


def _setting_fields(text: Any) -> dict[str, str]:
    config = _params(text)
    defaults = _config_defaults()
    fields = {k: json.dumps(v, default=str) for k, v in (defaults | config).items()
              if k not in NOT_A_SETTING and k != "model_params" and k != "ks"}
    fields["ks"] = json.dumps(list(config.get("ks", defaults["ks"])))
    for key, value in (config.get("model_params") or {}).items():
        fields[f"model.{key}"] = json.dumps(value, default=str)
    return fields


def setting_labels(runs: pd.DataFrame) -> pd.Series:
    """Per run, the config fields (``patience=40``) that differ between the runs of its data set and model.

    Empty when all runs of a (dataset, model) share their config apart from the grid's axes, so a
    plain grid has no setting; a sweep over run-config fields (or a table over stored runs of
    other configs) gets one setting per combination, which tables show as separate rows.
    """
    if runs.empty:
        return pd.Series([], dtype=object)
    fields = [_setting_fields(text) for text in runs.get("config_json", pd.Series(["{}"] * len(runs), index=runs.index))]
    labels = pd.Series([""] * len(runs), index=runs.index, dtype=object)
    for _, index in runs.groupby(["dataset", "model"], sort=False).groups.items():
        positions = [runs.index.get_loc(i) for i in index]
        mine = [fields[p] for p in positions]
        keys = sorted(set().union(*mine))
        varying = [k for k in keys if len({f.get(k, "(default)") for f in mine}) > 1]
        for p, i in zip(positions, index):
            labels[i] = ", ".join(f"{k}={_plain(fields[p].get(k, '(default)'))}" for k in varying)
    return labels


def _plain(text: str) -> str:
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return str(text)
    return str(value)
