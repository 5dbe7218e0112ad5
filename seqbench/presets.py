"""Paper presets: one word that sets every protocol field a paper's code used.

``--preset li2023`` / ``--set paper_preset=xu2024`` fills these values *below* the config file, the
options and ``--set`` (so anything given explicitly still wins), and the preset's name is stored in
the run config (``paper_preset``), so tables show which protocol a run followed. Values come from
``shared/spec`` (protocol.md "Model settings used by the CCE paper", README of paper_results):
what each paper's code did, not what its text says, where the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seqbench.errors import InputError


@dataclass(frozen=True)
class Preset:
    description: str
    fields: dict[str, Any]  # run-config fields and scoped keys (``sasrec.dropout``) for every data set
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    unknown: str = ""  # what the source does not state (left at the protocol's defaults)


PRESETS: dict[str, Preset] = {
    "li2023": Preset(
        "CCE paper (Li et al. 2023), run with S3-Rec's fine-tuning code: up to 200 epochs, early stopping "
        "on validation NDCG@20 with patience 10, batch 256, Adam 1e-3, max_len 50, SASRec in S3-Rec's "
        "settings (post-norm, GELU, dropout 0.5)",
        {"epochs": 200, "patience": 10, "selection_metric": "NDCG@20", "batch_size": 256, "lr": 1e-3,
         "weight_decay": 0.0, "max_len": 50, "exclude_seen": True,
         "sasrec.preset": "s3rec", "sasrec.dropout": 0.5, "sasrec.attn_dropout": 0.5},
        unknown="GRU4Rec's settings in that paper (model defaults kept)",
    ),
    "xu2024": Preset(
        "Xu et al. 2024 (scaled CE, fair comparison): validation every 5 epochs, up to 300 epochs; on Beauty "
        "SASRec dropout 0.6, batch 512, lr 5e-4; history items not masked on Yelp",
        {"epochs": 300, "eval_every": 5},
        per_dataset={"beauty": {"sasrec.dropout": 0.6, "sasrec.attn_dropout": 0.6, "batch_size": 512, "lr": 5e-4},
                     "yelp": {"exclude_seen": False}},
        unknown="early-stopping patience and selection metric (protocol defaults kept: 10 evaluations on NDCG@10)",
    ),
}


def preset_values(name: str, dataset: str) -> dict[str, Any]:
    """The config values preset ``name`` sets for ``dataset`` (its own name included)."""
    if name not in PRESETS:
        raise InputError(f"unknown preset '{name}': choose one of {', '.join(PRESETS)} (or leave it out for the protocol)")
    preset = PRESETS[name]
    return {**preset.fields, **preset.per_dataset.get(dataset, {}), "paper_preset": name}
