"""Resume points: a run stopped mid-way (Ctrl-C, SIGTERM, a killed process, a session that ends)
continues from its last evaluation instead of starting over.

At every evaluation the trainer saves everything the rest of the run depends on: the weights,
Adam's moments, the best weights so far, the epoch records, the early-stopping count, and the random
states (torch's global generator, which draws dropout, and the run's own generator, which draws
negatives and masks). Batch orders are seeded by (seed, epoch), so a resumed run computes exactly
what an uninterrupted one would have: the same losses, the same weights, the same run id.
The file lives at ``results/resume/<run id>.pt`` and is removed once the run is stored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqbench.atomic import atomic_file

FORMAT = 1  # raised when the saved state changes shape; other formats are ignored (the run restarts)


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run stands: the last epoch trained, its seconds so far, stale evaluations."""

    epoch: int
    seconds: float
    stale: int


def save_point(path: Path, run_id: str, position: Resumed, state: dict[str, Any]) -> str:
    """Save a trainer's ``state`` (its own dict of tensors and values) atomically: a kill mid-write
    keeps the last point. A full or read-only disk costs the point, not the run: training goes on
    and the answer says why no point was saved ("" when it was)."""
    payload = {"format": FORMAT, "run_id": run_id, "position": dataclasses.asdict(position), "state": state}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as temporary:
            torch.save(payload, temporary)
    except (OSError, RuntimeError) as error:  # torch reports a failed write as a RuntimeError
        return f"no resume point saved after epoch {position.epoch} ({str(error).splitlines()[0][:120]})"
    return ""


def load_point(path: Path, run_id: str, device: torch.device) -> tuple[Resumed, dict[str, Any]] | None:
    """The position and trainer state saved for ``run_id``; None (start afresh) when there is no usable one."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
    except Exception:  # a damaged resume point costs the time it saved, never the run
        return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("run_id") != run_id:
        return None
    return Resumed(**payload["position"]), payload["state"]


def random_states(device: torch.device, generator: torch.Generator) -> dict[str, Any]:
    """Every random state a run draws from: torch's global one (dropout) and the run's own generator."""
    cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    return {"torch_rng": torch.get_rng_state(), "cuda_rng": cuda, "generator": generator.get_state()}


def restore_random_states(states: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch_rng"].cpu())
    if states["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda_rng"]])
    generator.set_state(states["generator"].cpu())
