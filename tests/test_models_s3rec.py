"""S3-Rec pre-training: samples, batches, the four objectives, the cache and weight loading."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from seqbench.data.sequences import EvalSplit, PreparedDataset, Ragged
from seqbench.errors import InputError
from seqbench.models.registry import build_model
from seqbench.models.s3rec import S3RecConfig
from seqbench.training.pretrain import (
    attribute_table,
    cache_path,
    cached_pretrain,
    load_or_pretrain,
    make_batch,
    pretrain_key,
    pretrain_s3rec,
    pretrain_samples,
)

REPO = Path(__file__).resolve().parents[1]


def tiny_dataset(with_attributes: bool = True, users: int = 30, num_items: int = 24) -> PreparedDataset:
    """Users walk the catalogue with step 1 or 2; item i has attributes (i mod 4) + 1 and (i mod 3) + 5."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(users):
        start, step, length = rng.integers(1, num_items + 1), rng.integers(1, 3), rng.integers(4, 14)
        rows.append([int((start + step * t) % num_items + 1) for t in range(length)])
    attributes = Ragged.from_lists([[]] + [[i % 4 + 1, i % 3 + 5] for i in range(1, num_items + 1)])
    split = EvalSplit(np.arange(users), Ragged.from_lists([r[:-1] for r in rows]), np.array([r[-1] for r in rows]))
    return PreparedDataset(
        name="tiny",
        num_items=num_items,
        train_users=np.arange(users),
        train=Ragged.from_lists(rows),
        valid=split,
        test=split,
        item_attributes=attributes if with_attributes else None,
        num_attributes=7 if with_attributes else 0,
    )


SMALL = S3RecConfig(hidden_size=32, dropout=0.1, attn_dropout=0.1, pretrain_batch_size=50)


def test_pretrain_samples_are_all_prefixes_of_the_last_max_len_items() -> None:
    samples = pretrain_samples(Ragged.from_lists([[1, 2, 3], [4, 5, 6, 7, 8]]), max_len=3)
    expected = [[0, 0, 1], [0, 1, 2], [1, 2, 3], [0, 0, 6], [0, 6, 7], [6, 7, 8]]
    assert samples.tolist() == expected


def test_batch_masks_segments_negatives_and_attributes() -> None:
    dataset = tiny_dataset()
    items = torch.from_numpy(pretrain_samples(dataset.train, 10))
    table = attribute_table(dataset)
    long = torch.from_numpy(dataset.train.values)
    batch = make_batch(items, dataset.num_items, 0.2, table, long, torch.Generator().manual_seed(0))
    mask_id, real = dataset.num_items + 1, items > 0
    assert batch.item_mask[:, -1].all() and not batch.item_mask[~real].any()  # last item always masked
    assert torch.equal(batch.masked_items, torch.where(batch.item_mask, mask_id, items))
    clash = (batch.negatives[:, :, None] == items[:, None, :]).any(-1)
    assert clash[batch.item_mask].float().mean() < 0.01
    assert torch.equal(batch.attributes[0, -1], table[items[0, -1]].float()) and table[items[0, -1]].sum() == 2
    long_rows = items[real.sum(1) >= 2]
    assert batch.segment_context.shape == long_rows.shape
    in_segment = batch.segment_context == mask_id
    assert in_segment.any(1).all() and (in_segment.sum(1) <= long_rows.gt(0).sum(1) // 2).all()
    assert torch.equal(batch.segment_positive[in_segment], long_rows[in_segment])
    outside = ~in_segment & (long_rows > 0)
    assert (batch.segment_positive[outside] == mask_id).all() and (batch.segment_negative[outside] == mask_id).all()
    assert (batch.segment_negative[in_segment] >= 1).all() and (batch.segment_negative[in_segment] <= dataset.num_items).all()


def test_pretraining_lowers_each_of_the_four_objectives() -> None:
    # Smaller batches and a higher learning rate than published, so that ~100 steps are enough.
    config = S3RecConfig(**{**SMALL.__dict__, "pretrain_batch_size": 25, "pretrain_lr": 5e-3})
    result = pretrain_s3rec(tiny_dataset(), config, epochs=10, seed=0, max_len=10)
    assert result.objectives == ["aap", "mip", "map", "sp"] and result.note == ""
    first, last = result.epoch_losses[0], result.epoch_losses[-1]
    for objective in ("aap", "mip", "map", "sp", "total"):
        assert last[objective] < 0.9 * first[objective], (objective, first, last)


def test_without_attributes_only_mip_and_sp_are_trained_and_it_says_so() -> None:
    calls = []
    result = pretrain_s3rec(tiny_dataset(with_attributes=False), SMALL, epochs=2, seed=0, max_len=10,
                            progress=lambda epoch, losses: calls.append((epoch, losses)))
    assert result.objectives == ["mip", "sp"]
    assert "MIP and SP only" in result.note
    assert [epoch for epoch, _ in calls] == [0, 1] and set(calls[0][1]) == {"mip", "sp", "total"}


def test_pretraining_is_seeded_and_leaves_the_callers_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    weights_a, losses_a = pretrain_s3rec(tiny_dataset(), SMALL, epochs=1, seed=7, max_len=10)
    assert torch.equal(torch.rand(3), expected_next)
    weights_b, losses_b = pretrain_s3rec(tiny_dataset(), SMALL, epochs=1, seed=7, max_len=10)
    assert losses_a == losses_b and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_two_runs_at_once_pretrain_once(tmp_path: Path, monkeypatch) -> None:
    # Two parallel S3-Rec runs of one key (compare --jobs): the second waits for the first's cache.
    import threading
    import time

    from seqbench.training import pretrain

    real, calls = pretrain.pretrain_s3rec, []

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(0.5)  # long enough that the second caller arrives while the first trains
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain, "pretrain_s3rec", slow)
    dataset, results = tiny_dataset(), []
    workers = [threading.Thread(target=lambda: results.append(load_or_pretrain(dataset, SMALL, tmp_path, epochs=1, seed=0, max_len=10)))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(calls) == 1 and sorted(r.from_cache for r in results) == [False, True]


def test_cache_reuses_weights_and_keys_on_the_config(tmp_path: Path) -> None:
    dataset = tiny_dataset()
    first = load_or_pretrain(dataset, SMALL, tmp_path, epochs=1, seed=0, max_len=10)
    second = load_or_pretrain(dataset, SMALL, tmp_path, epochs=1, seed=0, max_len=10)
    assert not first.from_cache and second.from_cache and first.key == second.key
    assert second.epoch_losses == first.epoch_losses
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    # no temp files; the lock file parallel runs wait on stays (removing it would race)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([cache_path(tmp_path, "tiny", first.key).name,
                                                                 cache_path(tmp_path, "tiny", first.key).name + ".lock"])
    changed = S3RecConfig(**{**SMALL.__dict__, "mip_weight": 0.5})
    assert pretrain_key(dataset, changed, 1, 0, 10) != first.key
    assert pretrain_key(dataset, SMALL, 2, 0, 10) != first.key
    assert pretrain_key(tiny_dataset(users=31), SMALL, 1, 0, 10) != first.key


def test_fine_tuning_model_loads_the_pretrained_weights_by_value() -> None:
    dataset = tiny_dataset()
    weights, _ = pretrain_s3rec(dataset, SMALL, epochs=1, seed=0, max_len=10)
    torch.manual_seed(99)
    params = {k: v for k, v in SMALL.__dict__.items()}
    model = build_model("s3rec", dataset.num_items, 10, params, num_attributes=dataset.num_attributes)
    assert not torch.equal(model.item_embeddings(), weights["encoder.items.weight"][: dataset.num_items + 1])
    model.load_pretrained(weights)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    assert torch.equal(model.item_embeddings(), weights["encoder.items.weight"][: dataset.num_items + 1])
    model.train()
    inputs, targets = model.training_batch(torch.tensor([[0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]]))
    assert model(inputs).shape == (1, 10, 32) and targets[0, -1] == 12  # fine-tuning runs causally


def test_pretraining_on_lastfm_from_the_mirror(mirror: Path) -> None:
    spec = importlib.util.spec_from_file_location("s3rec_mirror", REPO / "scripts" / "pretrain_s3rec_mirror.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    full = module.load_s3rec_dataset(mirror, "LastFM")
    assert (full.num_items, len(full.train), full.num_attributes) == (3646, 1090, 388)
    # A slice of users keeps this test fast; scripts/pretrain_s3rec_mirror.py runs whole epochs.
    subset = PreparedDataset(
        name="LastFM-head", num_items=full.num_items, train_users=full.train_users[:8],
        train=full.train.take(np.arange(8)), valid=full.valid, test=full.test,
        item_attributes=full.item_attributes, num_attributes=full.num_attributes,
    )
    result = pretrain_s3rec(subset, S3RecConfig(), epochs=1, seed=0, max_len=20)
    assert result.objectives == ["aap", "mip", "map", "sp"]
    assert all(np.isfinite(v) for v in result.epoch_losses[0].values())


@dataclass
class Run:
    """The fields of the trainer's RunConfig that ``cached_pretrain`` reads."""

    model: str = "s3rec"
    model_params: dict = field(default_factory=lambda: {"hidden_size": 32, "pretrain_batch_size": 50})
    max_len: int = 10
    seed: int = 0
    pretrain_epochs: int = 1


def test_trainer_entry_point_pretrains_caches_and_reports(tmp_path: Path) -> None:
    dataset = tiny_dataset(with_attributes=False)
    weights, note = cached_pretrain(dataset, Run(), "cpu", tmp_path)
    again, note_again = cached_pretrain(dataset, Run(), "cpu", tmp_path)
    assert "pre-trained 1 epochs (mip, sp)" in note and "MIP and SP only" in note
    assert "reused from cache" in note_again and "reused" not in note
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    model = build_model("s3rec", dataset.num_items, 10, Run().model_params)
    model.load_pretrained(weights)
    with pytest.raises(InputError, match="s3rec only"):
        cached_pretrain(dataset, Run(model="sasrec"), "cpu", None)
