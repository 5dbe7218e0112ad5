"""Your own losses, models and interaction-file formats, benchmarked without editing seqbench.

Three ways in, all ending in the same registries as the built-ins (:data:`LOSSES`, :data:`MODELS`,
:data:`INTERACTION_PARSERS`):

- a plugin file or module (``--plugin myloss.py``, ``--plugin mypkg.losses``, or the
  ``SEQBENCH_PLUGINS`` variable, paths joined by ``os.pathsep``) whose code registers names with
  :func:`register_loss`, :func:`register_model` or :func:`register_parser`;
- an import path where a name is expected (``--losses cce,mypkg.losses:FocalCE`` or
  ``--losses cce,./myloss.py:FocalCE``): the class is registered under its ``name`` attribute;
- the entry-point groups ``seqbench.losses``, ``seqbench.models`` and ``seqbench.parsers`` of an
  installed package (the entry point's name is the registered name).

Every plugin loaded in a process is added to ``SEQBENCH_PLUGINS`` in its environment, so worker
processes (``--jobs``, Ray) started from it load the same code. A plugin's identity, a digest of its
source file, enters the run id (:func:`code_identity`): edit the plugin and its runs are new runs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import seqbench
from seqbench.data.parsers import INTERACTION_PARSERS
from seqbench.errors import InputError
from seqbench.losses.base import Loss
from seqbench.losses.registry import LOSSES
from seqbench.losses.spec import split_loss_list
from seqbench.models.base import SequentialRecommender
from seqbench.models.registry import MODELS

ENV = "SEQBENCH_PLUGINS"
GROUPS = {"seqbench.losses": "loss", "seqbench.models": "model", "seqbench.parsers": "parser"}
C = TypeVar("C")
FILE_MODULE_PREFIX = "seqbench_plugin_"  # the module name a plugin file is imported under


@dataclass(frozen=True)
class Origin:
    """Where a registered loss or model came from: ``built-in`` or the plugin's module and file."""

    source: str  # "built-in", or "plugin <module> (<file>)"
    digest: str  # "" for a built-in; else the sha256 (12 hex) of the plugin's source file
    version: str  # seqbench's version, or the installed distribution's that provided the plugin


_ORIGINS: dict[tuple[str, str], Origin] = {}
_LOADED: dict[str, ModuleType] = {}  # plugin spec (absolute file path or module name) -> module
_ENTRY_POINTS_LOADED = False


# --- registering ------------------------------------------------------------------------------
def register_loss(name: str | None = None) -> Callable[[type[C]], type[C]]:
    """Class decorator: ``@register_loss("focal-ce")`` (or the class's ``name`` attribute)."""
    return lambda cls: _register("loss", name, cls)


def register_model(name: str | None = None) -> Callable[[type[C]], type[C]]:
    return lambda cls: _register("model", name, cls)


def register_parser(name: str) -> Callable[[C], C]:
    """Function decorator for an interaction-file format: ``path -> DataFrame(user, item, timestamp)``."""
    def register(function: C) -> C:
        INTERACTION_PARSERS.register(name, function)  # type: ignore[arg-type]  # a Parser by contract
        return function
    return register


def _register(kind: str, name: str | None, cls: Any) -> Any:
    name = name or getattr(cls, "name", None) or cls.__name__.lower()
    _check_contract(kind, name, cls)
    registry: Any = LOSSES if kind == "loss" else MODELS
    if name in registry and registry.get(name) is not cls:
        owner = "a built-in" if origin(kind, name).source == "built-in" else "another plugin"
        raise InputError(f"{kind} name '{name}' of {cls.__module__}.{cls.__qualname__} is taken by {owner}: give yours another name")
    if kind == "loss":
        cls.name = name  # tables, colours and run ids read the class's name
    registry.register(name, cls)
    _ORIGINS[(kind, name)] = _origin_of(cls)
    return cls


def _check_contract(kind: str, name: str, cls: Any) -> None:
    """What a plugin class must have for everything else to work on it (the README's contract)."""
    where = f"{kind} plugin '{name}' ({getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)})"
    base, config = (Loss, "Params") if kind == "loss" else (SequentialRecommender, "Config")
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise InputError(f"{where} is not a subclass of {base.__module__}.{base.__name__}")
    if not is_dataclass(getattr(cls, config, None)):
        raise InputError(f"{where} has no `{config}` dataclass of hyper-parameters: add one (it may be empty)")
    params: Any = getattr(cls, config)
    if kind == "loss" and not callable(getattr(params, "validate", None)):
        raise InputError(f"{where}: its Params needs a `validate(self, num_items)` method (raise InputError on bad values)")
    if inspect.isabstract(cls):
        raise InputError(f"{where} is abstract: implement {', '.join(sorted(cls.__abstractmethods__))}")


def _origin_of(cls: Any) -> Origin:
    module = sys.modules.get(cls.__module__)
    file = Path(getattr(module, "__file__", "") or "")
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12] if file.is_file() else ""
    package = cls.__module__.split(".")[0]
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = "unversioned"
    where = f"file {file}" if cls.__module__.startswith(FILE_MODULE_PREFIX) else f"module {cls.__module__} ({file})"
    return Origin(f"plugin {where}", digest, version)


def origin(kind: str, name: str) -> Origin:
    """Where loss or model ``name`` came from (a registered name; built-ins are not recorded one by one)."""
    return _ORIGINS.get((kind, name), Origin("built-in", "", seqbench.__version__))


def describe(kind: str, name: str) -> str:
    """One line for the run record: ``built-in (seqbench 0.9)`` or the plugin, its digest and version."""
    found = origin(kind, name)
    if found.source == "built-in":
        return f"built-in (seqbench {found.version})"
    return f"{found.source} sha256:{found.digest} version {found.version}"


def code_identity(loss: str, model: str, loss_params: object = None) -> dict[str, str]:
    """What of the loss's and model's code enters a run id: a plugin's source digest, and a
    built-in's ``code_version`` once raised above 1 or its ``code_tag`` for these parameters
    (``ce_impl=auto``'s rule), so that every run stored before keeps its id."""
    identity: dict[str, str] = {}
    for kind, name, registry in (("loss", loss, LOSSES), ("model", model, MODELS)):
        found = origin(kind, name)
        built = registry.get(name)
        if found.source != "built-in":
            identity[kind] = f"sha256:{found.digest}"
        elif kind == "loss" and loss_params is not None and LOSSES.get(name).code_tag(loss_params):
            identity[kind] = LOSSES.get(name).code_tag(loss_params)
        elif getattr(built, "code_version", 1) > 1:
            identity[kind] = f"v{built.code_version}"
    return identity


# --- loading ----------------------------------------------------------------------------------
def load(spec: str) -> ModuleType:
    """Import a plugin file (``path/x.py``) or module (``mypkg.losses``) once per process; an
    import error is one input error naming the plugin."""
    key = str(Path(spec).resolve()) if spec.endswith(".py") else spec
    if key in _LOADED:
        return _LOADED[key]
    try:
        module = _import_file(Path(key)) if spec.endswith(".py") else importlib.import_module(spec)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"plugin file {spec} does not exist: give the path of a .py file") from None
    except Exception as error:  # any error in someone else's code is a bad plugin, said in one line
        raise InputError(f"plugin {spec} failed to import: {type(error).__name__}: {error}") from None
    _LOADED[key] = module
    _remember(key)
    return module


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise FileNotFoundError(path)
    name = f"{FILE_MODULE_PREFIX}{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"plugin {path} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickling and dataclasses look classes up by module name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _remember(key: str) -> None:
    """Add a loaded plugin to the environment that worker processes inherit."""
    present = [part for part in os.environ.get(ENV, "").split(os.pathsep) if part]
    if key not in present:
        os.environ[ENV] = os.pathsep.join([*present, key])


def loaded_plugins() -> tuple[str, ...]:
    """The plugins (files or modules) loaded in this process, for a worker to load the same."""
    return tuple(_LOADED)


def load_all(specs: list[str] | None = None) -> None:
    """Entry points of installed packages, then ``SEQBENCH_PLUGINS``, then ``specs`` (``--plugin``)."""
    global _ENTRY_POINTS_LOADED
    if not _ENTRY_POINTS_LOADED:
        _ENTRY_POINTS_LOADED = True
        for group, kind in GROUPS.items():
            for point in importlib.metadata.entry_points(group=group):
                _load_entry_point(point, kind)
    for spec in [part for part in os.environ.get(ENV, "").split(os.pathsep) if part] + list(specs or []):
        load(spec)


def _load_entry_point(point: importlib.metadata.EntryPoint, kind: str) -> None:
    try:
        target = point.load()
    except Exception as error:
        raise InputError(f"entry point '{point.name}' ({point.value}) of group {point.group} failed to load: "
                         f"{type(error).__name__}: {error}") from None
    if kind == "parser":
        register_parser(point.name)(target)
    else:
        _register(kind, point.name, target)


def resolve(text: str, kind: str) -> str:
    """A comma list of names where items may be import paths (``mypkg.mod:Class``,
    ``path/x.py:Class``, optionally followed by ``[params]``): each path is loaded and registered,
    and replaced by the registered name."""
    return ",".join(_resolve_item(item, kind) if _is_import_path(item) else item for item in split_loss_list(text))


def _is_import_path(item: str) -> bool:
    head = item.split("[", 1)[0]
    return ":" in head and not head.startswith("[")


def _resolve_item(item: str, kind: str) -> str:
    head, bracket, rest = item.partition("[")
    module_part, _, attribute = head.strip().rpartition(":")
    module = load(module_part)
    cls = getattr(module, attribute, None)
    if cls is None:
        raise InputError(f"{module_part} has no {attribute}: name a {kind} class defined in it")
    registry: Any = LOSSES if kind == "loss" else MODELS
    name = next((n for n in registry.names() if registry.get(n) is cls), None)
    if name is None:
        _register(kind, None, cls)
        name = next(n for n in registry.names() if registry.get(n) is cls)
    return name + bracket + rest
