"""The Typer application object; each command module registers itself on it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

# Typer ships its own copy of click; its exceptions are what the parser raises.
try:
    from typer._click import exceptions as click  # lazy: start-up
except ImportError:  # an older Typer on top of the click package
    from click import exceptions as click  # type: ignore[no-redef]


class OneLineErrors(TyperGroup):
    """Usage errors (a bad option value, an unknown option) as the one ``error:`` line every other
    bad input gets, exit 2, instead of a multi-line usage box; ``--json`` adds the JSON object."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        kwargs: dict[str, Any] = {"prog_name": prog_name, "complete_var": complete_var, "windows_expand_args": windows_expand_args, **extra}
        if not standalone_mode:
            return super().main(args, standalone_mode=False, **kwargs)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(argv, standalone_mode=False, **kwargs)
        except click.NoArgsIsHelpError:
            return super().main(argv, standalone_mode=True, **kwargs)  # prints the help
        except click.UsageError as error:
            from seqbench.cli.common import print_error  # lazy: start-up

            command = error.ctx.command_path if error.ctx is not None else "seqbench"
            print_error(f"{error.format_message()} (see `{command} --help`)", "--json" in argv, 2)
            sys.exit(2)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except typer.Abort:
            sys.stderr.write("Aborted!\n")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="seqbench",
    help="Benchmark the training objectives of sequential recommenders (GRU4Rec, SASRec, BERT4Rec, S3-Rec).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help text is plain: option help such as `cce[chunked]` must print as written, not as markup.
    rich_markup_mode=None,
    cls=OneLineErrors,
)


def _print_version(value: bool) -> None:
    if value:
        import seqbench  # lazy: start-up

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
