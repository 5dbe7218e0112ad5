"""The Typer application object; each command module registers itself on it."""

import typer

app = typer.Typer(
    name="seqbench",
    help="Benchmark the training objectives of sequential recommenders (GRU4Rec, SASRec, BERT4Rec, S3-Rec).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Benchmark the training objectives of sequential recommenders (GRU4Rec, SASRec, BERT4Rec, S3-Rec)."""
    # A callback keeps ``seqbench <command>`` a command group even while only one command is
    # registered (Typer would otherwise run that command directly, without its name).
