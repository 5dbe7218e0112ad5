"""The Typer application object; each command module registers itself on it."""

from typing import Annotated

import typer

app = typer.Typer(
    name="seqbench",
    help="Benchmark the training objectives of sequential recommenders (GRU4Rec, SASRec, BERT4Rec, S3-Rec).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        import seqbench

        typer.echo(f"seqbench {seqbench.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Benchmark the training objectives of sequential recommenders (GRU4Rec, SASRec, BERT4Rec, S3-Rec)."""
    # A callback keeps ``seqbench <command>`` a command group even while only one command is
    # registered (Typer would otherwise run that command directly, without its name).
