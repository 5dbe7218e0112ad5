"""``seqbench reproduce PAPER``: train a paper's grid under its preset (what is missing), then one
line per published cell: published, reproduced mean and 95% CI, relative difference, inside the CI,
inside the tolerance. Exit 0 when every cell passes, 1 when one misses both, 2 on bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqbench.cli.app import app
from seqbench.cli.common import emit_json, err_console, guarded, out_console
from seqbench.cli.compare import FORMATS, train_grid
from seqbench.cli.options import (
    DEFAULT_DATA_DIR,
    DEFAULT_RESULTS,
    DataDirOption,
    DebugOption,
    DeviceOption,
    JsonOption,
    MirrorOption,
    QuietOption,
    ResultsOption,
    SetOption,
)
from seqbench.errors import InputError, check_choice


@app.command()
def reproduce(
    paper: Annotated[str, typer.Argument(help="li2023 or xu2024: the paper whose published table is checked (its preset is used).")],
    datasets: Annotated[str, typer.Option(help="Comma-separated data sets.")] = "beauty",
    models: Annotated[str, typer.Option(help="Comma-separated models.")] = "sasrec",
    losses: Annotated[str, typer.Option(help="Comma-separated losses.")] = "cce",
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (default: the paper's own, else 0,1,2).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Max epochs per run (default: the preset's).")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", help="A cell also passes within this relative difference.")] = 0.05,
    jobs: Annotated[int | None, typer.Option("--jobs", help="Local runs at once, one process each.")] = None,
    no_train: Annotated[bool, typer.Option("--no-train", help="Gate the stored runs only; train nothing.")] = False,
    published: Annotated[
        Path | None, typer.Option("--published", help="A published table of your own (CSV: source,dataset,model,loss,metric,value).")
    ] = None,
    format_: Annotated[str, typer.Option("--format", help="text, markdown, latex or csv.")] = "text",
    device: DeviceOption = None,
    set_: SetOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    results: ResultsOption = DEFAULT_RESULTS,
    mirror: MirrorOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Check seqbench against a paper's published numbers: exit 1 when a cell misses both its CI and the tolerance."""

    def work() -> int:
        from seqbench.execution.executors import ExecutorChoice  # lazy: start-up
        from seqbench.reporting.render import render  # lazy: start-up
        from seqbench.reporting.reproduction import check_published, gate_frame  # lazy: start-up
        from seqbench.services.compare import CompareRequest, plan  # lazy: start-up
        from seqbench.services.reproduce import reproduction, reproduction_document, reproduction_request  # lazy: start-up

        check_choice("format", format_, FORMATS)
        if published is not None and not published.is_file():
            raise InputError(f"--published {published}: no such file (a CSV with columns source,dataset,model,loss,metric,value)")
        request = reproduction_request(CompareRequest(
            datasets=datasets, models=models, losses=losses, seeds=seeds, epochs=epochs, device=device, sets=list(set_ or []),
            train=not no_train, where=ExecutorChoice("local", jobs), data_dir=data_dir, results=results, mirror=mirror,
        ), paper, tolerance)
        grid = plan(request)
        check_published(paper, grid.names, published)  # before anything trains
        if request.train:
            train_grid(request, grid, quiet or json_)
        result = reproduction(request, grid, paper, tolerance, published)
        if json_:
            emit_json(reproduction_document(result))
        else:
            out_console.print(render(gate_frame(result), format_), highlight=False, markup=False, soft_wrap=True)
        if not result.passed:
            failed = ", ".join(f"{r.dataset}/{r.model}/{r.loss} {r.metric}" for r in result.failed.itertuples())
            err_console.print(f"reproduction failed: {len(result.failed)} of {len(result.cells)} cells miss both the 95% CI and "
                              f"±{tolerance:.0%}: {failed}", highlight=False, markup=False, soft_wrap=True)
            return 1
        return 0

    code = guarded(work, debug, json_)
    if code:
        raise typer.Exit(code)
