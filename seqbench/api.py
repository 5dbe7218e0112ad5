"""seqbench from Python (notebooks, scripts): the commands as functions, their options as keyword
arguments, records and DataFrames back. ``import seqbench`` stays light: these load on first use.

    import seqbench
    seqbench.prepare("synthetic")
    run = seqbench.train(dataset="synthetic", model="sasrec", loss="cce", epochs=3)
    result = seqbench.compare(datasets="synthetic", losses="cce,sce", seeds="0,1,2", epochs=3)
    result.tables["grid"]          # the improvement grid as a DataFrame
    seqbench.runs()                # every stored run, one row each

Bad input raises :class:`seqbench.errors.InputError` (the CLI's exit 2); a run that fails raises
:class:`seqbench.errors.RuntimeFailure` (stored as ``failed`` first).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from seqbench.configure import check_catalogues, loss_options, make_config
from seqbench.data.local import TableRequest, prepare_table
from seqbench.data.prepare import prepare as prepare_registered
from seqbench.errors import InputError
from seqbench.events import Progress
from seqbench.execution.executors import ExecutorChoice
from seqbench.memprof.grid import check_losses, parse_catalogs, profile_grid
from seqbench.memprof.profile import default_registries, is_mode
from seqbench.plugins import load_all, resolve
from seqbench.services import compare as service
from seqbench.services.tune import tune as run_tune
from seqbench.storage.records import run_record
from seqbench.storage.store import RunStore
from seqbench.training.trainer import train_run
from seqbench.tuning.studies import TuneSettings

__all__ = ["Comparison", "compare", "prepare", "profile_memory", "runs", "train", "tune"]


def _plugins(plugins: list[str] | str | None) -> None:
    load_all([plugins] if isinstance(plugins, str) else list(plugins or []))


def prepare(name: str | None = None, *, from_file: str | Path | None = None, data_dir: str | Path = "data",
            mirror: str | Path | None = None, force: bool = False, plugins: list[str] | str | None = None,
            **options: Any) -> dict[str, Any]:
    """Prepare a registered data set (``name``), or your own table (``from_file`` and ``name``; the
    options of ``prepare --from``: ``user``, ``item``, ``timestamp``, ``rating``, ``min_rating``,
    ``user_k``, ``item_k``, ``dedup``, ``split``; synthetic data takes its sizes: ``users=500``).
    Returns the statistics row (``status``: ``prepared`` or ``already prepared``)."""
    _plugins(plugins)
    if from_file is not None:
        return prepare_table(TableRequest(Path(from_file), name, **options), Path(data_dir), force)
    if name is None:
        raise InputError("prepare needs a data set name (or from_file= and name=)")
    params = {key: str(value) for key, value in options.items()} or None
    return prepare_registered(name, Path(data_dir), Path(mirror) if mirror else None, force, params=params)


def train(*, data_dir: str | Path = "data", results: str | Path = "results", mirror: str | Path | None = None,
          force: bool = False, restart: bool = False, plugins: list[str] | str | None = None,
          progress: Progress | None = None, **fields: Any) -> dict[str, Any]:
    """Train one run; ``fields`` are run-config fields and ``--set`` keys (``dataset``, ``model``,
    ``loss``, ``epochs``, ``lr``, ``paper_preset``, ``num_negatives``, ``sasrec.dropout`` as
    ``**{"sasrec.dropout": 0.5}`` ...). Returns the run record (the ``train --json`` document)."""
    _plugins(plugins)
    for key in ("loss", "model"):
        if key in fields:
            fields[key] = resolve(str(fields[key]), key)
    if "loss" in fields:
        fields = {**fields, **loss_options(fields["loss"], fields)}
    config = make_config(None, fields)
    check_catalogues([config], Path(data_dir), Path(mirror) if mirror else None)
    stored = train_run(config, Path(data_dir), Path(results), Path(mirror) if mirror else None, progress, force, restart)
    return run_record(stored.row, stored.epochs)


@dataclass
class Comparison:
    """What ``compare`` prints, as data: its tables (DataFrames by name), verdict lines, notes, and
    the runs of the grid that did not complete (the CLI's exit 1)."""

    tables: dict[str, Any]
    verdicts: list[str]
    notes: list[str]
    incomplete: list[dict[str, Any]] = field(default_factory=list)
    document: dict[str, Any] = field(default_factory=dict)  # the `compare --json` document


def compare(datasets: str = "synthetic", models: str = "gru4rec,sasrec", losses: str = "bce,ce,cce",
            seeds: str | list[int] | None = None, *, sets: Mapping[str, Any] | None = None, jobs: int | None = None,
            executor: str = "local", plugins: list[str] | str | None = None, data_dir: str | Path = "data",
            results: str | Path = "results", mirror: str | Path | None = None, progress: Progress | None = None,
            **options: Any) -> Comparison:
    """Train every combination not stored yet, then build the tables. ``sets`` are ``--set`` pairs
    (a list value is a sweep); ``options`` are the other ``CompareRequest`` fields (``epochs``,
    ``preset``, ``table``, ``proposed``, ``baselines``, ``train``, ``retry_failed``, ``runs`` ...)."""
    _plugins(plugins)
    request = service.CompareRequest(
        datasets=datasets, models=resolve(models, "model"), losses=resolve(losses, "loss"),
        seeds=",".join(map(str, seeds)) if isinstance(seeds, list) else seeds,
        sets=[f"{key}={_set_text(value)}" for key, value in (sets or {}).items()],
        where=ExecutorChoice(executor, jobs), data_dir=Path(data_dir), results=Path(results),
        mirror=Path(mirror) if mirror else None, **options,
    )
    service.check_request(request)
    grid = service.plan(request)
    study = service.tune(request, grid, progress)
    outcomes: list[Any] = []
    if request.train:
        runner = service.make_executor(request)
        service.prepare(request, grid)
        outcomes = service.train(request, grid, runner, progress)
    incomplete = service.incomplete_runs(request, grid, outcomes)
    result = service.report(request, grid, progress, study)
    return Comparison(result.study.tables, result.study.verdicts, result.study.notes, incomplete,
                      service.compare_document(request, result, incomplete))


def _set_text(value: Any) -> str:
    """A ``--set`` value as the command line would write it (lists are sweeps: ``a,b``)."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def tune(dataset: str, model: str = "sasrec", losses: str = "bce,cce", trials: int = 12, *, seed: int = 0,
         sets: Mapping[str, Any] | None = None, epochs: int | None = None, plugins: list[str] | str | None = None,
         data_dir: str | Path = "data", results: str | Path = "results", mirror: str | Path | None = None,
         progress: Progress | None = None) -> Any:
    """Tune each loss with the same trial budget; the tuning report (``budget`` and ``chosen``
    DataFrames, ``studies`` by loss)."""
    _plugins(plugins)
    overrides = service.grid_overrides({"datasets": [dataset]}, epochs, None, [f"{k}={_set_text(v)}" for k, v in (sets or {}).items()])
    names = resolve(losses, "loss").split(",")
    return run_tune(dataset, resolve(model, "model"), names, trials, Path(data_dir), Path(results), seed, overrides, TuneSettings(),
                    None, None, Path(mirror) if mirror else None, progress)


def profile_memory(losses: str = "cce,cce[chunked],sce", catalogs: str = "1e4,1e5", *, model: str = "sasrec", batch_size: int = 256,
            max_len: int = 50, hidden: int = 64, mode: str = "auto", device: str = "cpu",
            plugins: list[str] | str | None = None) -> pd.DataFrame:
    """``seqbench memprof``: peak memory of one training step per loss and catalogue size, one row
    per (catalog, loss). (``seqbench.memprof`` is the package that measures it, hence the name.)"""
    _plugins(plugins)
    if not is_mode(mode):
        raise InputError(f"unknown mode {mode!r}")
    registries = default_registries()
    labels = check_losses(resolve(losses, "loss"), registries)
    records = profile_grid(parse_catalogs(catalogs), labels, resolve(model, "model"), batch_size, max_len, hidden, mode, device,
                           False, registries)
    return pd.DataFrame([record.to_json() for record in records])


def runs(results: str | Path = "results") -> pd.DataFrame:
    """Every stored run, one row each (the ``run.parquet`` columns)."""
    return RunStore(Path(results)).table()
