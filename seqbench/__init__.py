"""seqbench: benchmark the training objectives of sequential recommenders.

``seqbench.prepare``, ``train``, ``compare``, ``tune``, ``profile_memory`` (``memprof``) and ``runs`` are the commands
as Python functions (:mod:`seqbench.api`), imported on first use so that ``import seqbench`` (and
the command line's start) stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
API = ("prepare", "train", "compare", "tune", "profile_memory", "runs", "Comparison")


def __getattr__(name: str) -> Any:
    if name in API:
        from seqbench import api  # lazy: start-up

        return getattr(api, name)
    raise AttributeError(f"module 'seqbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
