"""``seqbench memprof`` on the command line: JSON contract, speed at a million items, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.cli.memprof import DEFAULT_LOSSES
from seqbench.memprof.profile import split_loss_list

runner = CliRunner()


def invoke(args: list[str]) -> object:
    """Typer runs a lone command as the app itself; with several commands it is a subcommand."""
    command = typer.main.get_command(app)
    # (typer vendors its own click: a group is recognised by its subcommands, not by its class)
    return runner.invoke(app, args if hasattr(command, "commands") else args[1:])
JSON_KEYS = {"loss", "model", "catalog", "batch_size", "max_len", "hidden", "peak_bytes", "mode", "device"}


def test_a_million_items_answers_a_row_per_loss() -> None:
    # No time limit here (timed unit tests fail on a loaded machine); its speed is a benchmark's claim.
    result = invoke(["memprof", "--catalog", "1e6", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["kind"] == "memprof" and document["schema_version"] == 1
    rows = document["records"]
    assert [row["loss"] for row in rows] == split_loss_list(DEFAULT_LOSSES)
    for row in rows:
        assert set(row) >= JSON_KEYS
        assert row["catalog"] == 10**6 and row["peak_bytes"] > 0
        assert row["mode"] in ("measured", "predicted")
    by_loss = {row["loss"]: row for row in rows}
    # 256 x 50 x 1e6 float32 logits cannot be measured on this machine: dense CE is predicted.
    assert by_loss["cce"]["mode"] == "predicted"
    assert by_loss["cce"]["peak_bytes"] > 50 * by_loss["cce[chunked]"]["peak_bytes"]
    # Even bce's step (~1.6 GiB: the 1e6 x 64 item table, its gradient and Adam moments) is too
    # slow to measure on a CPU, so auto answers every row from the prediction.
    assert by_loss["bce"]["mode"] == "predicted" and "too slow" in by_loss["bce"]["note"]


def test_table_breakdown_and_plot(tmp_path: Path) -> None:
    plot = tmp_path / "peaks.png"
    args = ["memprof", "--catalog", "300,600", "--losses", "cce,cce[chunked]", "--batch-size", "4",
            "--max-len", "8", "--hidden", "8", "--mode", "predict", "--breakdown", "--plot", str(plot), "--quiet"]
    result = invoke(args)
    assert result.exit_code == 0, result.stderr
    assert "dense cce / this" in result.stdout and "1x" in result.stdout
    assert "loss backward" in result.stdout and "optimizer state" in result.stdout
    assert plot.stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--catalog", "1"], "below 2"),
        (["--catalog", "ten"], "not a number"),
        (["--catalog", "1e4.5"], "not a number"),
        (["--batch-size", "0"], "batch-size"),
        (["--losses", "cce,softmax"], "unknown loss"),
        (["--catalog", "1e18"], "overflow"),
        (["--mode", "guess"], "--mode"),
        (["--model", "transformer"], "unknown model"),
        (["--hidden", "0"], "hidden"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], fragment: str) -> None:
    result = invoke(["memprof", "--json", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]
    assert json.loads(result.stdout) == {"error": lines[0].removeprefix("error: "), "exit_code": 2}  # --json: the error as one object
