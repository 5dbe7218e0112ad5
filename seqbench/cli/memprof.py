"""``seqbench memprof``: peak memory (and time, FLOPs) of one training step per loss and catalog."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from seqbench.cli.app import app
from seqbench.cli.common import emit_json, err_console, guarded, out_console, use_plugins
from seqbench.cli.options import AutoDeviceOption, DebugOption, JsonOption, PluginOption, QuietOption
from seqbench.errors import InputError, unknown_name

if TYPE_CHECKING:
    from seqbench.memprof.profile import Mode, ProfileRecord, Registries

DEFAULT_CATALOGS = "1e4,1e5,1e6"
DEFAULT_LOSSES = "ce,cce,cce[chunked],sce,sampled-ce,bce"


def parse_catalogs(text: str) -> list[int]:
    """``1e4,1e5,1e6`` -> item counts; each must be a whole number >= 2."""
    catalogs = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        try:
            value = float(part)
        except ValueError:
            raise InputError(f"catalog {part!r} is not a number: write e.g. --catalog 1e4,1e5,1e6") from None
        if not math.isfinite(value) or value != int(value):
            raise InputError(f"catalog {part!r} is not a whole number of items: write e.g. 1e5 or 100000")
        if value < 2:
            raise InputError(f"catalog {part!r} is below 2 items: a softmax needs at least 2 classes")
        catalogs.append(int(value))
    if not catalogs:
        raise InputError("--catalog is empty: write e.g. --catalog 1e4,1e5,1e6")
    return catalogs


def _check_losses(text: str, registries: Registries) -> list[str]:
    from seqbench.memprof.profile import (  # lazy: start-up
        parse_loss_spec,
        split_loss_list,
    )

    labels = split_loss_list(text)
    if not labels:
        raise InputError("--losses is empty: write e.g. --losses cce,cce[chunked],sce")
    for label in labels:
        name = parse_loss_spec(label).name
        if name not in registries.loss_names:
            raise InputError(unknown_name("loss", name, registries.loss_names))
    return labels


def run_memprof(
    catalogs: list[int],
    losses: list[str],
    model: str,
    batch_size: int,
    max_len: int,
    hidden: int,
    mode: Mode,
    device: str,
    breakdown: bool,
    registries: Registries,
    progress: bool,
) -> list[ProfileRecord]:
    from seqbench.memprof.profile import StepShape, profile_step  # lazy: start-up

    for catalog in catalogs:  # every shape is checked before the first (possibly long) step runs
        StepShape(catalog, batch_size, max_len, hidden).validate()
    registries.model_params(model, hidden)  # an unknown model name fails here, before any step
    records = []
    for catalog in catalogs:
        for loss in losses:
            if progress:
                err_console.print(f"memprof: {loss} @ {catalog:,} items ({mode})", highlight=False, markup=False)
            records.append(
                profile_step(model, loss, catalog, batch_size, max_len, hidden, mode, device, None, breakdown, registries)
            )
    return records


@app.command()
def memprof(
    catalog: Annotated[str, typer.Option("--catalog", help="Catalog sizes, comma-separated (1e4,1e5,1e6).")] = DEFAULT_CATALOGS,
    losses: Annotated[
        str,
        typer.Option(
            "--losses",
            help="Losses, comma-separated; cce[chunked] = cce computed in chunks, never holding the whole logits matrix (same values); "
            "NAME[key=value;...] sets options.",
        ),
    ] = DEFAULT_LOSSES,
    model: Annotated[str, typer.Option("--model", help="Encoder (sasrec, gru4rec, bert4rec, s3rec).")] = "sasrec",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences per batch (B).")] = 256,
    max_len: Annotated[int, typer.Option("--max-len", help="Positions per sequence (L).")] = 50,
    hidden: Annotated[int, typer.Option("--hidden", help="Hidden size d.")] = 64,
    mode: Annotated[str, typer.Option("--mode", help="measure, predict (fake tensors) or auto.")] = "auto",
    device: AutoDeviceOption = "auto",
    breakdown: Annotated[bool, typer.Option("--breakdown", help="Per-stage table for each loss.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a log-log plot of peak memory vs catalog.")] = None,
    plugin: PluginOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Peak memory of one training step per loss and catalog size, measured where it fits, predicted otherwise."""

    def work() -> None:
        from seqbench.memprof.profile import MODES, default_registries, is_mode  # lazy: start-up
        from seqbench.memprof.report import (  # lazy: start-up
            peak_table,
            plot_peaks,
            stage_legend,
            stage_table,
        )
        from seqbench.storage.records import document  # lazy: start-up

        if not is_mode(mode):
            raise InputError(f"unknown --mode {mode!r}: choose {', '.join(MODES)}")
        named = use_plugins(plugin, losses=losses, model=model)
        catalogs = parse_catalogs(catalog)
        registries = default_registries()
        labels = _check_losses(str(named["losses"]), registries)
        records = run_memprof(
            catalogs, labels, str(named["model"]), batch_size, max_len, hidden, mode, device, breakdown, registries, not quiet
        )
        if plot is not None:
            err_console.print(f"wrote {plot_peaks(records, plot)}", highlight=False, markup=False)
        if json_output:
            emit_json(document("memprof", records=[record.to_json() for record in records]))
            return
        out_console.print(peak_table(records), highlight=False, soft_wrap=True, markup=False)
        if breakdown:
            for record in records:
                out_console.print("\n" + stage_table(record), highlight=False, soft_wrap=True, markup=False)
            out_console.print("\n" + stage_legend(), highlight=False, soft_wrap=True, markup=False)

    guarded(work, debug, json_output)
