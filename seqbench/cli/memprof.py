"""``seqbench memprof``: peak memory (and time, FLOPs) of one training step per loss and catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqbench.cli.app import app
from seqbench.cli.common import emit_json, err_console, guarded, out_console, use_plugins
from seqbench.cli.options import AutoDeviceOption, DebugOption, JsonOption, PluginOption, QuietOption
from seqbench.errors import InputError

DEFAULT_CATALOGS = "1e4,1e5,1e6"
DEFAULT_LOSSES = "ce,cce,cce[chunked],sce,sampled-ce,bce"


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
        from seqbench.memprof.grid import check_losses, parse_catalogs, profile_grid  # lazy: start-up
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
        labels = check_losses(str(named["losses"]), registries)
        say = None if quiet else (lambda text: err_console.print(text, highlight=False, markup=False))
        records = profile_grid(catalogs, labels, str(named["model"]), batch_size, max_len, hidden, mode, device, breakdown, registries, say)
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
