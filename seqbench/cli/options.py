"""The options several commands share, each spelled once: flag, environment variable and help.

A command takes one as a parameter annotation (``data_dir: DataDirOption = DEFAULT_DATA_DIR``).
Where a command needs a variant (``prepare``'s own help for ``--mirror``, ``runs``'s sub-commands'
optional ``--results``), the variant is built here from the same flag and variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from seqbench.presets import PRESETS

DEFAULT_DATA_DIR = Path("data")
DEFAULT_RESULTS = Path("results")

_DATA_DIR = dict(envvar="SEQBENCH_DATA_DIR", help="Where prepared data sets live.")
_RESULTS = dict(envvar="SEQBENCH_RESULTS", help="The run store directory.")
_MIRROR_ENV = "SEQBENCH_MIRROR"

DataDirOption = Annotated[Path, typer.Option("--data-dir", **_DATA_DIR)]
ResultsOption = Annotated[Path, typer.Option("--results", **_RESULTS)]
# A sub-command's --results: None = the one given to the parent command (``runs --results R show``).
SubResultsOption = Annotated[Path | None, typer.Option("--results", **_RESULTS, show_default=str(DEFAULT_RESULTS))]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]

MirrorOption = Annotated[Path | None, typer.Option("--mirror", envvar=_MIRROR_ENV, help="Offline mirror of raw data files.", show_default="download")]
PrepareMirrorOption = Annotated[
    Path | None,
    typer.Option("--mirror", envvar=_MIRROR_ENV, help="Offline mirror directory to read raw files from instead of downloading."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any config field: key=value (repeatable), e.g. lr=5e-4, ce_impl=chunked.", show_default="none"),
]
GeneratorSetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Generator parameter key=value for synthetic (users, items, length, seed)."),
]
LogToOption = Annotated[
    str | None,
    typer.Option(
        "--log-to",
        help="Also mirror runs into a tracker: mlflow (needs seqbench[mlflow]; MLFLOW_TRACKING_URI, else RESULTS/mlruns).",
        show_default="none",
    ),
]

_DEVICE_HELP = "auto, cpu or cuda."
DeviceOption = Annotated[str | None, typer.Option("--device", help=_DEVICE_HELP)]  # None: the config's (auto)
AutoDeviceOption = Annotated[str, typer.Option("--device", help=_DEVICE_HELP)]

# Where runs train: this machine or a Ray cluster (compare's grid, tune's trials).
ExecutorOption = Annotated[str, typer.Option("--executor", help="local or ray.")]
RayAddressOption = Annotated[str | None, typer.Option("--ray-address", help="Ray cluster: auto or ray://host:port (default: start a local Ray).")]
CpusPerRunOption = Annotated[
    float | None,
    typer.Option("--cpus-per-run", help="Ray: CPUs each run reserves (also its torch threads).", show_default="1"),
]
GpusPerRunOption = Annotated[
    float | None,
    typer.Option("--gpus-per-run", help="Ray: GPUs each run reserves (a fraction shares one).", show_default="1 where the cluster has GPUs, else 0"),
]

_PRESET_HELP = f"A paper's protocol in one word: {', '.join(PRESETS)} (explicit options and --set override it)."
PresetOption = Annotated[str | None, typer.Option("--preset", help=_PRESET_HELP, show_default="the protocol's")]
PluginOption = Annotated[
    list[str] | None,
    typer.Option("--plugin", help="A plugin file (x.py) or module that registers losses, models or formats; repeatable (also SEQBENCH_PLUGINS).",
                 show_default="none"),
]
