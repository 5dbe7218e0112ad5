"""Evaluate a stored run again: its best checkpoint, on a split and cut-offs of the caller's choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqbench.configure import make_config
from seqbench.data.prepare import load_dataset
from seqbench.devices import resolve_device
from seqbench.errors import InputError
from seqbench.measure.ranking import evaluate_split, per_timestamp_ndcg
from seqbench.models.registry import build_model
from seqbench.storage.store import RunStore, stale_reason
from seqbench.training.threads import run_threads


def evaluate_stored(
    run_id: str,
    results: Path,
    data_dir: Path,
    split: str = "test",
    ks: tuple[int, ...] | None = None,
    per_timestamp: bool = False,
    device_name: str = "auto",
    mirror: Path | None = None,
) -> dict[str, Any]:
    """Re-evaluate a stored run's best checkpoint (loaded with ``weights_only=True``)."""
    if split not in ("valid", "test"):
        raise InputError(f"split must be 'valid' or 'test', got '{split}'")
    if ks is not None and (not ks or min(ks) < 1):
        raise InputError(f"--k cut-offs must be integers >= 1, got {','.join(map(str, ks))}")
    resolve_device(device_name)  # an unknown device fails before the data set is loaded
    store = RunStore(results)
    run_id = store.resolve(run_id)
    config = make_config(store.config(run_id))
    device = resolve_device(device_name)
    dataset = load_dataset(config.dataset, data_dir, mirror)
    stale = stale_reason(store.row(run_id), dataset.fingerprint)
    if stale:  # its checkpoint's item ids and users mean other things on the data as prepared now
        raise InputError(f"{stale}: train it again (`seqbench train ... --force`) to evaluate it on this data")
    model = build_model(config.model, dataset.num_items, config.max_len, config.model_params, num_attributes=dataset.num_attributes)
    try:
        model.load_state_dict(store.checkpoint(run_id))
    except RuntimeError as error:
        raise InputError(f"checkpoint of run '{run_id}' does not fit its model ({str(error).splitlines()[0]})") from None
    model.to(device)
    with run_threads(config.threads):  # the run's thread count: the same reduction order as stored
        evaluation = evaluate_split(
            model, getattr(dataset, split), config.max_len, device, config.eval_batch_size, config.exclude_seen, ks or config.ks
        )
        result: dict[str, Any] = {"run_id": run_id, "split": split, "metrics": evaluation.metrics}
        if per_timestamp:
            result["per_timestamp"] = per_timestamp_ndcg(
                model, getattr(dataset, split), config.max_len, device, exclude_seen=config.exclude_seen
            )
    return result
