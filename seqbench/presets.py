"""Paper presets: one word that sets every protocol field a paper's code used.

``--preset xu2024`` / ``--set paper_preset=xu2024`` fills these values *below* the config file,
the options and ``--set`` (so anything given explicitly still wins), and the preset's name is
stored in the run config (``paper_preset``), so tables show which protocol a run followed. Values
come from ``shared/spec/protocol.md`` (what each paper's code did, not what its text says, where
the two differ). A preset can depend on the data set and on the loss, where a paper retuned per
loss: the layers apply in the order every run < data set < loss < (data set, loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seqbench.errors import InputError, unknown_name


@dataclass(frozen=True)
class Preset:
    description: str
    fields: dict[str, Any]  # run-config fields and scoped keys (``sasrec.dropout``) for every run
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_loss: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_dataset_loss: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    unknown: str = ""  # what the source does not state or seqbench cannot express (listed by --dry-run)
    seeds: tuple[int, ...] = ()  # the paper's own seeds, used when --seeds is not given

    def values(self, dataset: str, loss: str) -> dict[str, Any]:
        return {**self.fields, **self.per_dataset.get(dataset, {}), **self.per_loss.get(loss, {}),
                **self.per_dataset_loss.get((dataset, loss), {})}


def _xu_sasrec(dropout: float, batch: int, lr: float, weight_decay: float) -> dict[str, Any]:
    """One of Xu et al.'s tuned settings: dropout (embeddings, blocks and attention weights alike),
    batch size, Adam's learning rate and weight decay."""
    return {"sasrec.dropout": dropout, "sasrec.attn_dropout": dropout, "batch_size": batch, "lr": lr, "weight_decay": weight_decay}


def _negatives(count: int) -> dict[str, Any]:
    """K negatives for every sampled-softmax loss Xu et al. ran (uniform over all items)."""
    return {"nce.num_negatives": count, "scaled-ce.num_negatives": count}


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
        "Xu et al. 2024 (scaled CE, fair comparison), their code (CE-SCE-LLMRec, freerec 0.6.3): SASRec in their "
        "layout (1 head, raw-input attention residual, padding keys visible, Xavier init), validation every 5 "
        "epochs on NDCG@10 with no early stopping (the best validation epoch of the whole run is tested), CE 200 "
        "epochs and the other losses 300, per data set and per loss tuned dropout / batch / lr / weight decay, "
        "K = 500 negatives on Beauty (100 elsewhere), scaled-CE alpha 100, NCE c 10; history not masked on Yelp",
        {"epochs": 300, "eval_every": 5, "patience": 0, "selection_metric": "NDCG@10", "max_len": 50,
         "exclude_seen": True, "sasrec.preset": "xu", "scaled-ce.alpha": 100.0, "nce.c": 10.0, **_negatives(100)},
        per_dataset={
            "beauty": _xu_sasrec(0.6, 512, 5e-4, 1e-8) | _negatives(500),
            "ml-1m": _xu_sasrec(0.1, 128, 1e-3, 1e-6) | {"max_len": 200},
            "yelp": _xu_sasrec(0.7, 512, 1e-3, 1e-6) | {"exclude_seen": False},
        },
        per_loss={"cce": {"epochs": 200}},
        per_dataset_loss={
            ("beauty", "bce"): _xu_sasrec(0.4, 512, 5e-4, 1e-8),
            ("ml-1m", "bce"): _xu_sasrec(0.1, 256, 5e-4, 1e-8),
            ("yelp", "bce"): _xu_sasrec(0.4, 512, 5e-4, 1e-4),
            ("beauty", "bpr"): _xu_sasrec(0.3, 512, 5e-4, 1e-8),
            ("ml-1m", "bpr"): _xu_sasrec(0.1, 256, 5e-3, 1e-8),
            ("yelp", "bpr"): _xu_sasrec(0.1, 512, 5e-4, 1e-4),
        },
        unknown="GRU4Rec and BERT4Rec in their code's layout (seqbench's own models are used); BCE/BPR negatives "
                "drawn from the user's unseen items once per epoch (seqbench's sampler per step); their "
                "DataLoader's 4 workers each ending on a partial batch; ML-1M's and Yelp's exact files",
        seeds=(0, 1, 2, 3, 4),
    ),
    "mezentsev2024": Preset(
        "Mezentsev et al. 2024 (scalable CE), the SCE repository's configs: SASRec d 64, 2 blocks, dropout 0.6, "
        "batch 1024, Adam 1e-3, up to 300 epochs with early stopping (patience 50) on validation NDCG@10; "
        "Beauty max_len 200",
        {"epochs": 300, "patience": 50, "selection_metric": "NDCG@10", "batch_size": 1024, "lr": 1e-3,
         "weight_decay": 0.0, "eval_every": 1, "sasrec.preset": "original", "sasrec.hidden_size": 64,
         "sasrec.num_layers": 2, "sasrec.dropout": 0.6, "sasrec.attn_dropout": 0.6},
        per_dataset={"beauty": {"max_len": 200}},
        unknown="their SASRec's exact layout and initialisation (Kang's layout is used), the heads, the SCE "
                "bucket settings per data set (seqbench's sce defaults), max_len outside Beauty",
        seeds=(1235, 37, 2451, 12, 3425),
    ),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError(unknown_name("preset", name, PRESETS) + " (or leave it out for the protocol)")
    return PRESETS[name]


def preset_values(name: str, dataset: str, loss: str) -> dict[str, Any]:
    """The config values preset ``name`` sets for a run of ``loss`` on ``dataset`` (its own name included)."""
    return {**preset(name).values(dataset, loss), "paper_preset": name}
