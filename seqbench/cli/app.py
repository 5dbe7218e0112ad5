"""The Typer application object; each command module registers itself on it."""

import typer

app = typer.Typer(
    name="seqbench",
    help="Benchmark the training objectives of sequential recommenders (GRU4Rec, SASRec, BERT4Rec, S3-Rec).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
