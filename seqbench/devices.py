"""Which device a ``--device`` value names: the one resolution for runs, executors and memprof.

``auto`` is CUDA where there is one, else the CPU; an explicit ``cuda`` (or ``cuda:N``) without
CUDA is an input error whose fix depends on who asks (this machine's torch, a Ray cluster's GPUs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqbench.errors import InputError

if TYPE_CHECKING:
    import torch  # lazy: torch (the ground floor stays light for the command line's start)

DEVICES = ("auto", "cpu", "cuda")
NO_LOCAL_CUDA = "CUDA is not available: use --device cpu or auto"


def device_name(name: str, cuda: bool, no_cuda: str = NO_LOCAL_CUDA) -> str:
    """``cpu``, ``cuda`` (or ``cuda:N`` as given) for ``name`` where CUDA is (``cuda``) or is not at hand."""
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise InputError(f"unknown device '{name}': choose one of {', '.join(DEVICES)}")
    if kind == "cuda" and not cuda:
        raise InputError(f"device '{name}' was asked for but {no_cuda}")
    if kind == "auto":
        return "cuda" if cuda else "cpu"
    return name


def resolve_device(name: str) -> torch.device:
    """The torch device of this process for ``name``."""
    import torch  # lazy: torch (the ground floor stays light for the command line's start)

    return torch.device(device_name(name, torch.cuda.is_available()))
