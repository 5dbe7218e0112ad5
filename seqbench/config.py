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
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqbench.coerce import coerce, parse_value, split_assignments
from seqbench.data import AUGMENTATIONS
from seqbench.devices import DEVICES
from seqbench.errors import InputError, did_you_mean, unknown_name
from seqbench.losses.aliases import canonical_param
from seqbench.names import check_name
from seqbench.presets import preset_values


@dataclass
class RunConfig:
    dataset: str = "synthetic"
    model: str = "sasrec"
    loss: str = "cce"
    loss_params: dict[str, Any] = field(default_factory=dict)
    model_params: dict[str, Any] = field(default_factory=dict)
    positions: str | None = None  # override the loss's positions: "all" or "last"
    epochs: int = 150
    # Evaluations without improvement before training stops; 0 = never stop early (every epoch
    # runs and the best validation epoch of the whole run is tested, as in Xu et al.'s code).
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
    # Where the loss's and model's code came from, when that is more than "this seqbench's built-in
    # at code version 1": a plugin's source digest, a built-in's raised ``code_version``. Derived by
    # ``configure.make_config`` (never set by hand), so editing a plugin makes its runs new runs.
    code: dict[str, str] = field(default_factory=dict)

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


LATER_FIELDS: dict[str, Any] = {"selection_metric": "NDCG@10", "paper_preset": "", "sampler": "random", "code": {}}
SAMPLERS = ("random", "length")
FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(RunConfig)}
FIELD_HINTS = typing.get_type_hints(RunConfig)
MAX_K = 1_000_000  # a cut-off beyond any catalogue seqbench trains on; larger ones overflow the metric arrays
MAX_THREADS = 1024  # torch refuses (or crashes on) absurd thread counts; no CPU run needs more
MAX_SEED = 2**63 - 1  # torch.manual_seed and numpy generators take seeds up to here
NESTED = ("loss_params", "model_params")
DERIVED = ("code",)  # fields computed from the registries, not read from YAML or --set


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs of a run config, each value read as YAML would read it."""
    return {key: parse_value(value) for key, value in split_assignments(pairs, "epochs=5").items()}


def _coerce(name: str, value: Any) -> Any:
    return coerce(name, value, FIELD_HINTS[name])


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist: check the --config path") from None
    except IsADirectoryError:
        raise InputError(f"config file {path} is a directory: give the path of a YAML file") from None
    except UnicodeDecodeError:
        raise InputError(f"config file {path} is not UTF-8 text: save it as UTF-8 YAML") from None
    except OSError as error:
        raise InputError(f"cannot read config file {path} ({error.strerror or error})") from None
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
            if key in DERIVED:
                continue
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
    name = overrides.get("paper_preset", base.get("paper_preset")) or ""
    if not name:
        return {}
    dataset = str(overrides.get("dataset", base.get("dataset", RunConfig.dataset)))
    loss = str(overrides.get("loss", base.get("loss", RunConfig.loss)))
    return preset_values(str(name), dataset, loss)


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
            # A setting for another loss/model of a grid: not this run's, but a typo in its key
            # must fail here, as it would for a run of that loss, not silently do nothing.
            valid = loss_keys.get(scope) or model_keys.get(scope) or []
            if name not in valid and not (scope in loss_keys and canonical_param(name) in valid):
                raise InputError(f"unknown parameter '{name}' in '{key}' for {scope}: valid are {', '.join(valid)}")
            return
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
        raise InputError(f"unknown config key '{key}'{did_you_mean(key, known)}: valid keys are {', '.join(known)} or a loss/model hyper-parameter")


def ks_ok(ks: tuple[int, ...]) -> bool:
    """Cut-offs an evaluation can compute: at least one, each from 1 to :data:`MAX_K`."""
    return len(ks) > 0 and all(1 <= k <= MAX_K for k in ks)


def validate(config: RunConfig, loss_keys: dict[str, list[str]] | None = None, model_keys: dict[str, list[str]] | None = None) -> None:
    checks = [
        (config.epochs >= 0, f"epochs must be >= 0, got {config.epochs}"),
        (config.patience >= 0, f"patience must be >= 0 (0 = no early stopping), got {config.patience}"),
        (config.batch_size >= 1, f"batch_size must be >= 1, got {config.batch_size}"),
        (config.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {config.eval_batch_size}"),
        (config.max_len >= 2, f"max_len must be >= 2, got {config.max_len}"),
        (config.lr > 0, f"lr must be > 0, got {config.lr}"),
        (config.weight_decay >= 0, f"weight_decay must be >= 0, got {config.weight_decay}"),
        (0 <= config.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}, got {config.seed}"),
        (config.augment_stride is None or config.augment_stride >= 1, f"augment_stride must be >= 1, got {config.augment_stride}"),
        (config.eval_every >= 1, f"eval_every must be >= 1, got {config.eval_every}"),
        (config.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got '{config.device}'"),
        (config.positions in (None, "all", "last"), f"positions must be 'all' or 'last', got '{config.positions}'"),
        (ks_ok(config.ks), f"ks must be integers from 1 to {MAX_K:,}, got {config.ks}"),
        (config.time_budget is None or config.time_budget > 0, f"time_budget must be > 0 seconds, got {config.time_budget}"),
        (config.pretrain_epochs >= 0, f"pretrain_epochs must be >= 0, got {config.pretrain_epochs}"),
        (0 <= config.threads <= MAX_THREADS, f"threads must be 0 (torch's default) to {MAX_THREADS}, got {config.threads}"),
        (config.sampler in SAMPLERS, f"sampler must be one of {', '.join(SAMPLERS)}, got '{config.sampler}'"),
        (config.augment in AUGMENTATIONS, f"augment must be one of {', '.join(AUGMENTATIONS)}, got '{config.augment}'"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    check_name("data set", config.dataset)  # it becomes a folder name and part of the run id
    selectable = selectable_metrics(config.ks)
    if config.selection_metric not in selectable:
        raise InputError(unknown_name(f"selection_metric (with ks={list(config.ks)})", config.selection_metric, selectable))
    if loss_keys is not None and config.loss not in loss_keys:
        raise InputError(unknown_name("loss", config.loss, sorted(loss_keys)))
    if model_keys is not None and config.model not in model_keys:
        raise InputError(unknown_name("model", config.model, sorted(model_keys)))


def selectable_metrics(ks: tuple[int, ...]) -> list[str]:
    """Validation metrics an evaluation with cut-offs ``ks`` produces (what early stopping may use)."""
    from seqbench.measure.metrics import (
        metric_names,  # lazy: numpy (the command line starts without it)
    )

    return metric_names(ks)
