"""The typed run configuration: defaults < YAML file < ``--set key=value``, validated, hashed.

Keys accepted by ``--set``:
- any field of :class:`RunConfig` (``epochs=5``, ``exclude_seen=false``);
- ``loss.KEY`` / ``model.KEY`` for a hyper-parameter of the chosen loss or model;
- ``LOSSNAME.KEY`` (``sampled-ce.num_negatives=64``): applies only when that loss is chosen;
- a bare hyper-parameter name of the chosen loss or model (``ce_impl=chunked``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from seqbench.errors import InputError

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class RunConfig:
    dataset: str = "synthetic"
    model: str = "sasrec"
    loss: str = "cce"
    loss_params: dict[str, Any] = field(default_factory=dict)
    model_params: dict[str, Any] = field(default_factory=dict)
    positions: str | None = None  # override the loss's positions: "all" or "last"
    epochs: int = 150
    patience: int = 10
    batch_size: int = 256
    max_len: int = 50
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    exclude_seen: bool = True
    ks: tuple[int, ...] = (5, 10, 20)
    eval_every: int = 1
    eval_batch_size: int = 1024
    augment: str = "none"
    augment_stride: int | None = None
    time_budget: float | None = None  # seconds of training; stops after the epoch that exceeds it
    bf16: bool = False  # CUDA only: autocast the forward pass to bfloat16
    compile: bool = False  # torch.compile the model
    pretrain_epochs: int = 0  # S3-Rec self-supervised pre-training epochs (0 = none)
    # CPU intra-op threads (0 = torch's default). Small models on a busy machine run several
    # times faster on one thread; part of the run id because it changes the order of reductions.
    threads: int = 0
    # Validation metric that picks the best epoch and drives early stopping (protocol: NDCG@10;
    # S3-Rec's fine-tuning code, which the CCE paper ran, stops on NDCG@20; RecBole on MRR@10).
    selection_metric: str = "NDCG@10"
    paper_preset: str = ""  # the paper preset (``--preset``) that set the other fields; "" = protocol
    # Training batches: "random" (shuffled samples) or "length" (shuffled, then grouped by
    # sequence length within pools of batches, each batch cut to its longest window). "length"
    # changes which samples share a batch, so it is part of the run id; it is not the protocol.
    sampler: str = "random"

    def hash_payload(self) -> dict[str, Any]:
        """What identifies a run: every field that can change its result."""
        payload = dataclasses.asdict(self)
        payload["ks"] = list(self.ks)
        # Fields added after runs were first stored enter the hash only when set away from their
        # default, so every run stored before they existed keeps its id.
        for name, default in LATER_FIELDS.items():
            if payload[name] == default:
                del payload[name]
        return payload

    def run_id(self, device_type: str) -> str:
        payload = self.hash_payload() | {"device": device_type}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{self.dataset}-{self.model}-{self.loss}-s{self.seed}-{digest}"


LATER_FIELDS: dict[str, Any] = {"selection_metric": "NDCG@10", "paper_preset": "", "sampler": "random"}
SAMPLERS = ("random", "length")
FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(RunConfig)}
NESTED = ("loss_params", "model_params")


def parse_value(text: str) -> Any:
    """A ``--set`` value as YAML scalar/list (``5`` -> int, ``1e-3`` -> float, ``false`` -> bool)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        # YAML reads 1e-3 as a string; numbers written that way are meant as floats.
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects key=value, got '{pair}': for example --set epochs=5")
        result[key.strip()] = parse_value(value.strip())
    return result


def _coerce(name: str, value: Any) -> Any:
    kind = str(FIELD_TYPES[name])
    try:
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind.startswith("tuple"):
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            return tuple(int(v) for v in items)
        if kind.startswith("int |"):
            return None if value is None else int(value)
        if kind.startswith("float |"):
            return None if value is None else float(value)
        if kind.startswith("dict"):
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
        return None if value is None and "None" in kind else str(value)
    except (TypeError, ValueError):
        raise InputError(f"config key '{name}' expects {kind}, got {value!r}") from None


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist: check the --config path") from None
    except yaml.YAMLError as error:
        raise InputError(f"config file {path} is not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise InputError(f"config file {path} must hold a mapping of config keys, got {type(content).__name__}")
    return content


def build_config(
    base: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    loss_keys: dict[str, list[str]] | None = None,
    model_keys: dict[str, list[str]] | None = None,
) -> RunConfig:
    """Merge ``base`` (YAML) and ``overrides`` (CLI) into a validated :class:`RunConfig`.

    ``loss_keys``/``model_keys`` map each known loss/model to its hyper-parameter names, so bare
    keys can be routed and unknown keys rejected with the valid ones listed.
    """
    values: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {"loss_params": {}, "model_params": {}}
    scoped: list[tuple[str, str, Any]] = []
    for source in (_preset_source(base or {}, overrides or {}), base or {}, overrides or {}):
        for key, value in source.items():
            if key in NESTED:
                nested[key].update(_coerce(key, value))
            elif key in FIELD_TYPES:
                values[key] = _coerce(key, value)
            else:
                scoped.append((key, str(key), value))
    config = RunConfig(**values)
    for key, _, value in scoped:
        _route(config, nested, key, value, loss_keys or {}, model_keys or {})
    config.loss_params = nested["loss_params"]
    config.model_params = nested["model_params"]
    validate(config, loss_keys, model_keys)
    return config


def _preset_source(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A paper preset's values (lowest priority: the file, options and --set override them)."""
    from seqbench.training.presets import preset_values

    name = overrides.get("paper_preset", base.get("paper_preset")) or ""
    if not name:
        return {}
    dataset = str(overrides.get("dataset", base.get("dataset", RunConfig.dataset)))
    return preset_values(str(name), dataset)


def _route(
    config: RunConfig,
    nested: dict[str, dict[str, Any]],
    key: str,
    value: Any,
    loss_keys: dict[str, list[str]],
    model_keys: dict[str, list[str]],
) -> None:
    scope, dot, name = key.partition(".")
    if dot:
        if scope == "loss" or scope == config.loss:
            nested["loss_params"][name] = value
        elif scope == "model" or scope == config.model:
            nested["model_params"][name] = value
        elif scope in loss_keys or scope in model_keys:
            return  # a setting for another loss/model of a grid: not this run's
        else:
            raise InputError(f"unknown config scope '{scope}' in '{key}': use loss.KEY, model.KEY or LOSSNAME.KEY")
        return
    in_loss = key in loss_keys.get(config.loss, [])
    in_model = key in model_keys.get(config.model, [])
    if in_loss:
        nested["loss_params"][key] = value
    elif in_model:
        nested["model_params"][key] = value
    elif any(key in keys for keys in loss_keys.values()) or any(key in keys for keys in model_keys.values()):
        return  # a hyper-parameter of another loss/model (grid-wide --set): not this run's
    else:
        known = sorted(set(FIELD_TYPES) - set(NESTED))
        raise InputError(f"unknown config key '{key}': valid keys are {', '.join(known)} or a loss/model hyper-parameter")


def validate(config: RunConfig, loss_keys: dict[str, list[str]] | None = None, model_keys: dict[str, list[str]] | None = None) -> None:
    checks = [
        (config.epochs >= 0, f"epochs must be >= 0, got {config.epochs}"),
        (config.patience >= 1, f"patience must be >= 1, got {config.patience}"),
        (config.batch_size >= 1, f"batch_size must be >= 1, got {config.batch_size}"),
        (config.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {config.eval_batch_size}"),
        (config.max_len >= 2, f"max_len must be >= 2, got {config.max_len}"),
        (config.lr > 0, f"lr must be > 0, got {config.lr}"),
        (config.eval_every >= 1, f"eval_every must be >= 1, got {config.eval_every}"),
        (config.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got '{config.device}'"),
        (config.positions in (None, "all", "last"), f"positions must be 'all' or 'last', got '{config.positions}'"),
        (all(k >= 1 for k in config.ks) and len(config.ks) > 0, f"ks must be positive integers, got {config.ks}"),
        (config.time_budget is None or config.time_budget > 0, f"time_budget must be > 0 seconds, got {config.time_budget}"),
        (config.pretrain_epochs >= 0, f"pretrain_epochs must be >= 0, got {config.pretrain_epochs}"),
        (config.threads >= 0, f"threads must be >= 0 (0 = torch's default), got {config.threads}"),
        (config.sampler in SAMPLERS, f"sampler must be one of {', '.join(SAMPLERS)}, got '{config.sampler}'"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    selectable = selectable_metrics(config.ks)
    if config.selection_metric not in selectable:
        raise InputError(f"selection_metric '{config.selection_metric}' is not computed with ks={list(config.ks)}: choose from {', '.join(selectable)}")
    if loss_keys is not None and config.loss not in loss_keys:
        raise InputError(f"unknown loss '{config.loss}': choose from {', '.join(sorted(loss_keys))}")
    if model_keys is not None and config.model not in model_keys:
        raise InputError(f"unknown model '{config.model}': choose from {', '.join(sorted(model_keys))}")


def selectable_metrics(ks: tuple[int, ...]) -> list[str]:
    """Validation metrics an evaluation with cut-offs ``ks`` produces (what early stopping may use)."""
    from seqbench.training.metrics import metrics_from_ranks

    return list(metrics_from_ranks(np.zeros(1, dtype=np.int64), ks))
