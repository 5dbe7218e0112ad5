"""S3-Rec pre-training: samples, batches, the training loop and its on-disk cache.

Samples follow S3-Rec's ``PretrainDataset``: every prefix (length >= 1) of the last ``max_len``
items of each user's training sequence. Per batch, each real position is masked with probability
``mask_prob`` and the last position always is; MIP negatives are uniform items not in the sample;
for SP, sequences of >= 2 items get one random segment (length 1..n//2) masked, and the negative
segment is taken from the concatenation of all training sequences at a random offset.

The optimised loss is S3-Rec's: the weighted sum of each objective's *summed* loss over the batch,
Adam (lr 1e-3, no weight decay). Reported per epoch: each objective's mean per position
(per segment for SP), so numbers are comparable across batch sizes and data sets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from seqbench.atomic import atomic_file
from seqbench.data.sequences import PreparedDataset, Ragged, windows_ending_at
from seqbench.errors import InputError, RuntimeFailure
from seqbench.models.registry import make_config
from seqbench.models.s3rec import PretrainBatch, S3Rec, S3RecConfig

EpochLosses = Callable[[int, dict[str, float]], None]  # (epoch, mean loss per objective), after each epoch
CACHE_VERSION = 1
NEGATIVE_RETRIES = 3  # rejection rounds for MIP negatives; a rare leftover collision is accepted


@dataclass
class PretrainResult:
    state_dict: dict[str, Tensor]
    epoch_losses: list[dict[str, float]]  # per epoch: objective -> mean loss, plus "total"
    objectives: list[str]
    note: str = ""
    seconds: float = 0.0
    from_cache: bool = False
    key: str = ""

    def __iter__(self) -> Iterator[Any]:
        # Unpacks as the (state_dict, per-epoch losses) pair: ``weights, losses = pretrain_s3rec(...)``.
        return iter((self.state_dict, self.epoch_losses))


def pretrain_samples(train: Ragged, max_len: int) -> np.ndarray:
    """Every prefix of each sequence's last ``max_len`` items, left-padded (S x max_len)."""
    starts, ends = train.offsets[:-1], train.offsets[1:]
    first = np.maximum(starts, ends - max_len)
    counts = ends - first
    rows = np.repeat(np.arange(len(train)), counts)
    sample_ends = np.repeat(first, counts) + 1 + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    return windows_ending_at(train.values, first[rows], sample_ends, max_len)


def attribute_table(dataset: PreparedDataset) -> Tensor | None:
    """(N + 2) x A multi-hot table (row 0 = padding, row N + 1 = [MASK], both empty).

    Stored as uint8 (a quarter of float32: Yelp's is 20k x 1k) and made float per batch.
    """
    attrs, count = dataset.item_attributes, dataset.num_attributes
    if attrs is None or count < 1 or len(attrs.values) == 0:
        return None
    rows, values = attrs.coo()
    if values.min() < 1 or values.max() > count:
        raise InputError(f"item attribute ids must lie in 1..{count} (num_attributes), found {values.min()}..{values.max()}")
    if rows.max() > dataset.num_items:
        raise InputError(f"item_attributes has rows beyond item {dataset.num_items}")
    table = torch.zeros(dataset.num_items + 2, count, dtype=torch.uint8)
    table[torch.from_numpy(rows), torch.from_numpy(values - 1)] = 1  # duplicates collapse to 1
    return table


def _uniform_items(shape: torch.Size, num_items: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.randint(1, num_items + 1, shape, generator=generator, device=device)


def _mip_negatives(items: Tensor, num_items: int, generator: torch.Generator) -> Tensor:
    negatives = _uniform_items(items.shape, num_items, generator, items.device)
    for _ in range(NEGATIVE_RETRIES):
        clash = (negatives[:, :, None] == items[:, None, :]).any(-1)
        if not clash.any() or num_items <= items.shape[1]:
            break
        negatives = torch.where(clash, _uniform_items(items.shape, num_items, generator, items.device), negatives)
    return negatives


def _segments(
    items: Tensor, long_sequence: Tensor, mask_id: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """(context, positive, negative) for the rows with >= 2 items; see the module docstring."""
    real = items > 0
    items = items[real.sum(1) >= 2]
    real = items > 0
    rows, length = items.shape
    n = real.sum(1)
    draw = torch.rand(rows, 3, generator=generator, device=items.device)
    seg_len = (draw[:, 0] * (n // 2)).long() + 1
    start = (length - n) + (draw[:, 1] * (n - seg_len + 1)).long()
    neg_start = (draw[:, 2] * (len(long_sequence) - seg_len + 1)).long()
    cols = torch.arange(length, device=items.device)[None, :]
    offset = cols - start[:, None]
    in_seg = (offset >= 0) & (offset < seg_len[:, None])
    mask = torch.full_like(items, mask_id)
    neg_index = (neg_start[:, None] + offset).clamp(0, len(long_sequence) - 1)
    context = torch.where(in_seg, mask, items)
    positive = torch.where(in_seg, items, mask) * real
    negative = torch.where(in_seg, long_sequence[neg_index], mask) * real
    return context, positive, negative


def make_batch(
    items: Tensor,
    num_items: int,
    mask_prob: float,
    attributes: Tensor | None,
    long_sequence: Tensor,
    generator: torch.Generator,
) -> PretrainBatch:
    real = items > 0
    mask_id = num_items + 1
    item_mask = (torch.rand(items.shape, generator=generator, device=items.device) < mask_prob) & real
    item_mask[:, -1] |= real[:, -1]  # S3-Rec always masks the last item, as fine-tuning predicts it
    context, positive, negative = _segments(items, long_sequence, mask_id, generator)
    return PretrainBatch(
        items=items,
        masked_items=torch.where(item_mask, torch.full_like(items, mask_id), items),
        item_mask=item_mask,
        negatives=_mip_negatives(items, num_items, generator),
        attributes=None if attributes is None else attributes[items].float(),
        segment_context=context,
        segment_positive=positive,
        segment_negative=negative,
    )


@dataclass
class _Tensors:
    """What every batch draws from, already on the training device."""

    device: torch.device
    attributes: Tensor | None
    long_sequence: Tensor  # all training sequences concatenated: the source of SP negatives


def _epoch(
    model: S3Rec,
    optimizer: torch.optim.Optimizer,
    samples: Tensor,
    order: np.ndarray,
    data: _Tensors,
    weights: dict[str, float],
    generator: torch.Generator,
) -> dict[str, float]:
    config: S3RecConfig = model.config
    sums = {name: 0.0 for name in weights}
    counts = {name: 0 for name in weights}
    index = torch.from_numpy(order)
    for begin in range(0, len(order), config.pretrain_batch_size):
        items = samples[index[begin : begin + config.pretrain_batch_size]].to(data.device)
        batch = make_batch(items, model.num_items, config.mask_prob, data.attributes, data.long_sequence, generator)
        terms = model.pretrain_terms(batch)
        loss = sum(weights[name] * value for name, (value, _) in terms.items())
        assert isinstance(loss, Tensor)  # MIP and SP are always among the terms
        if not torch.isfinite(loss):
            raise RuntimeFailure(f"S3-Rec pre-training loss is {loss.item()} (not finite): lower pretrain_lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for name, (value, count) in terms.items():
            sums[name] += float(value.detach())
            counts[name] += count
    means = {name: sums[name] / max(counts[name], 1) for name in weights}
    means["total"] = sum(weights[name] * means[name] for name in weights)
    return means


def pretrain_s3rec(
    dataset: PreparedDataset,
    config: S3RecConfig,
    epochs: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: EpochLosses | None = None,
    max_len: int = 50,
) -> PretrainResult:
    """Pre-train S3-Rec on ``dataset``'s training sequences; returns CPU weights and epoch losses.

    On a data set without item attributes only MIP and SP are optimised (AAP and MAP need
    attributes); ``note`` says so. The caller's global RNG state is left untouched.
    """
    config = config.resolved()
    if epochs < 0:
        raise InputError(f"pre-training epochs must be >= 0, got {epochs}")
    if config.pretrain_batch_size < 1:
        raise InputError(f"pretrain_batch_size must be >= 1, got {config.pretrain_batch_size}")
    device = torch.device(device)
    attributes = attribute_table(dataset)
    weights = config.weights()
    note = ""
    if attributes is None:
        weights = {name: w for name, w in weights.items() if name in ("mip", "sp")}
        note = f"data set '{dataset.name}' has no item attributes: S3-Rec pre-trained with MIP and SP only (no AAP, MAP)"
    samples = torch.from_numpy(pretrain_samples(dataset.train, max_len))
    if len(samples) == 0:
        raise InputError(f"data set '{dataset.name}' has no training items to pre-train S3-Rec on")
    data = _Tensors(
        device=device,
        attributes=None if attributes is None else attributes.to(device),
        long_sequence=torch.from_numpy(dataset.train.values).to(device),
    )
    cuda = [device.index or 0] if device.type == "cuda" else []
    started = time.perf_counter()
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        model = S3Rec(config, dataset.num_items, max_len, num_attributes=dataset.num_attributes).to(device)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.pretrain_lr, betas=(0.9, 0.999))
        generator = torch.Generator(device=device).manual_seed(seed)
        history = []
        for epoch in range(epochs):
            order = np.random.default_rng([seed, epoch]).permutation(len(samples))
            history.append(_epoch(model, optimizer, samples, order, data, weights, generator))
            if progress is not None:
                progress(epoch, history[-1])
    state = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    return PretrainResult(state, history, list(weights), note, time.perf_counter() - started)


def dataset_fingerprint(dataset: PreparedDataset) -> str:
    digest = hashlib.sha256()
    for array in (dataset.train.values, dataset.train.offsets):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    if dataset.item_attributes is not None:
        digest.update(np.ascontiguousarray(dataset.item_attributes.values, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(dataset.item_attributes.offsets, dtype=np.int64).tobytes())
    digest.update(f"{dataset.num_items}/{dataset.num_attributes}".encode())
    return digest.hexdigest()


def pretrain_key(dataset: PreparedDataset, config: S3RecConfig, epochs: int, seed: int, max_len: int) -> str:
    """Hash of everything the pre-trained weights depend on (not the device)."""
    payload = {
        "version": CACHE_VERSION,
        "dataset": dataset.name,
        "data": dataset_fingerprint(dataset),
        "config": asdict(config.resolved()),
        "epochs": epochs,
        "seed": seed,
        "max_len": max_len,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cache_path(cache_dir: Path, dataset_name: str, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", dataset_name)
    return Path(cache_dir) / f"s3rec-pretrain-{safe}-{key[:20]}.pt"


def load_or_pretrain(
    dataset: PreparedDataset,
    config: S3RecConfig,
    cache_dir: Path | None,
    epochs: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: EpochLosses | None = None,
    max_len: int = 50,
) -> PretrainResult:
    """:func:`pretrain_s3rec`, reusing weights stored under ``cache_dir`` for the same key
    (``cache_dir=None``: no cache)."""
    key = pretrain_key(dataset, config, epochs, seed, max_len)
    path = None if cache_dir is None else cache_path(cache_dir, dataset.name, key)
    with _cache_lock(path):  # two parallel runs (--jobs) of one key: the second waits and reads
        if path is not None and path.is_file():
            cached = _read_cache(path, key)
            if cached is not None:
                return cached
        result = pretrain_s3rec(dataset, config, epochs, seed, device, progress, max_len)
        result.key = key
        if path is not None:
            payload = {
                "key": key, "state_dict": result.state_dict, "epoch_losses": result.epoch_losses,
                "objectives": result.objectives, "note": result.note, "seconds": result.seconds,
            }
            with atomic_file(path) as tmp:
                torch.save(payload, tmp)
        return result


@contextlib.contextmanager
def _cache_lock(path: Path | None) -> Iterator[None]:
    """An exclusive lock on ``path``'s sibling ``.lock`` file (POSIX ``flock``; held per open file,
    so threads and processes alike wait). Without a cache, or without ``fcntl``, no lock."""
    try:
        import fcntl  # optional: fcntl (POSIX only)

        can_lock = True
    except ImportError:  # Windows: the atomic write alone (a second run pre-trains again)
        can_lock = False
    if path is None or not can_lock:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_cache(path: Path, key: str) -> PretrainResult | None:
    """The cached pre-training for ``key``; a damaged cache file is reported, then recomputed
    (and replaced), instead of failing every later S3-Rec run."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored.get("key") != key:
            return None
        return PretrainResult(
            stored["state_dict"], stored["epoch_losses"], stored["objectives"], stored["note"],
            stored["seconds"], from_cache=True, key=key,
        )
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        sys.stderr.write(f"warning: damaged S3-Rec pre-training cache {path} ({type(error).__name__}): pre-training again and replacing it\n")
        return None


class RunSettings(Protocol):
    """The fields of a run's config that pre-training depends on (``RunConfig`` has them)."""

    model: str
    model_params: dict[str, Any]
    max_len: int
    seed: int
    pretrain_epochs: int


def cached_pretrain(
    dataset: PreparedDataset,
    run: RunSettings,
    device: str | torch.device,
    cache_dir: Path | None,
    progress: EpochLosses | None = None,
) -> tuple[dict[str, Tensor], str]:
    """The trainer's entry point: pre-train (or reuse) for a run; returns (weights, note for the run)."""
    if run.model != "s3rec":
        raise InputError(f"pretrain_epochs applies to model s3rec only, not '{run.model}': set pretrain_epochs 0")
    config = make_config("s3rec", run.model_params)
    result = load_or_pretrain(dataset, config, cache_dir, run.pretrain_epochs, run.seed, device, progress, run.max_len)
    final = result.epoch_losses[-1] if result.epoch_losses else {}
    summary = ", ".join(f"{name} {value:.4f}" for name, value in final.items())
    note = f"S3-Rec pre-trained {run.pretrain_epochs} epochs ({', '.join(result.objectives)})"
    note += " [reused from cache]" if result.from_cache else f" in {result.seconds:.0f} s"
    note += f"; final epoch losses: {summary}" if summary else ""
    return result.state_dict, note + (f"; {result.note}" if result.note else "")
