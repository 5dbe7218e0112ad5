"""The profiled training step: build model, loss and primed Adam, then one forward/backward/step.

Everything is created inside the caller's memory meter, and the step goes through the stages that
:class:`~seqbench.memprof.meters.StageLog` records (parameters, optimiser state, inputs, encoder
activations, loss forward/backward, encoder backward, gradients, optimiser step). The loss sees
the same :meth:`LossBatch.for_model` batch as in training. Model and loss come from injectable
:class:`Registries`, so the profiler can be tested without the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from seqbench.errors import InputError
from seqbench.losses.base import LossBatch
from seqbench.losses.registry import LOSSES, build_loss
from seqbench.losses.spec import LossSpec
from seqbench.memprof.analytic import overflows_int64
from seqbench.memprof.meters import Meter, StageLog
from seqbench.models.registry import build_model, model_class

# Names a model config may use for its width; the first one present is set to --hidden.
HIDDEN_FIELDS = ("hidden_size", "embedding_size")


@dataclass(frozen=True)
class StepShape:
    catalog: int
    batch_size: int
    max_len: int
    hidden: int

    def validate(self) -> None:
        if self.catalog < 2:
            raise InputError(f"catalog must be at least 2 items (got {self.catalog})")
        for name in ("batch_size", "max_len", "hidden"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if overflows_int64(self.batch_size, self.max_len, self.catalog):
            raise InputError(
                f"batch size x max len x catalog = {self.batch_size * self.max_len * self.catalog} "
                "elements overflow int64 byte counts: lower one of them"
            )



# -- registries (injectable so the profiler can be tested without the real ones) ----------------
@dataclass
class Registries:
    build_model: Callable[..., Any]
    build_loss: Callable[..., Any]
    model_params: Callable[[str, int], dict[str, Any]]
    loss_names: tuple[str, ...]


def _real_model_params(model_name: str, hidden: int) -> dict[str, Any]:
    names = {f.name for f in fields(model_class(model_name).Config)}
    return {name: hidden for name in HIDDEN_FIELDS if name in names}


def default_registries() -> Registries:
    return Registries(build_model, build_loss, _real_model_params, tuple(LOSSES.names()))



# -- the step ----------------------------------------------------------------------------------------
@dataclass
class StepState:
    model: torch.nn.Module
    loss: torch.nn.Module
    optimizer: torch.optim.Optimizer
    inputs: torch.Tensor
    targets: torch.Tensor
    history: torch.Tensor
    generator: torch.Generator


def _storage_bytes(tensors: list[torch.Tensor]) -> int:
    storages = {id(t.untyped_storage()): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def _prime_optimizer(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> None:
    """Allocate Adam's moments the way the first step does; zero gradients leave parameters unchanged."""
    for param in params:
        param.grad = torch.zeros_like(param)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def build_state(
    spec: LossSpec, model_name: str, shape: StepShape, registries: Registries, stages: StageLog, seed: int
) -> StepState:
    torch.manual_seed(seed)
    # Factory calls follow the default device (set by the caller); the generator must match it.
    generator = torch.Generator(device=torch.get_default_device()).manual_seed(seed)
    stages.begin("parameters")
    model_params = registries.model_params(model_name, shape.hidden)
    model = registries.build_model(model_name, shape.catalog, shape.max_len, model_params)
    loss = registries.build_loss(spec.name, shape.catalog, dict(spec.params) or None)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad] + list(loss.parameters())
    stages.begin("optimizer state")
    optimizer = torch.optim.Adam(params, lr=1e-3)
    _prime_optimizer(optimizer, params)
    stages.begin("inputs")
    # Full windows (no padding): every position carries a target, the worst case for memory.
    windows = torch.randint(1, shape.catalog + 1, (shape.batch_size, shape.max_len + 1), generator=generator)
    inputs, targets = model.training_batch(windows, generator)
    return StepState(model, loss, optimizer, inputs, targets, windows, generator)


def train_step(state: StepState, stages: StageLog | None) -> None:
    """One training step; with ``stages``, each stage is recorded as it begins."""
    begin = stages.begin if stages is not None else (lambda name: None)
    begin("encoder activations")
    hidden = state.model(state.inputs)
    begin("loss forward")
    batch = LossBatch.for_model(state.model, hidden, state.targets, state.history, state.generator)
    value = state.loss(batch).value
    del batch
    begin("loss backward")
    if stages is not None and hidden.requires_grad:
        # The gradient reaching the encoder output marks the end of the loss's own backward.
        hidden.register_hook(lambda grad: begin("encoder backward"))
    value.backward()
    del value, hidden
    if stages is not None:
        stages.end()
        grads = [p.grad for group in state.optimizer.param_groups for p in group["params"] if p.grad is not None]
        stages.component("gradients", _storage_bytes(grads))
    begin("optimizer step")
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)


# torch's flop counter knows mm/addmm/bmm/baddbmm but not their in-place forms, which chunked
# losses use to accumulate gradients (grad_x.addmm_(...)); count them with the same formulas.
def _addmm_flops(bias: Any, left: Any, right: Any, out_shape: Any = None, **_: Any) -> int:
    rows, inner = left
    return 2 * rows * inner * right[1]


def _baddbmm_flops(bias: Any, left: Any, right: Any, out_shape: Any = None, **_: Any) -> int:
    batch, rows, inner = left
    return 2 * batch * rows * inner * right[2]


_IN_PLACE_FLOPS = {torch.ops.aten.addmm_: _addmm_flops, torch.ops.aten.baddbmm_: _baddbmm_flops}


def tracked_step(
    spec: LossSpec,
    model_name: str,
    shape: StepShape,
    registries: Registries,
    meter: Meter,
    seed: int,
    step: Callable[[StepState, StageLog | None], None] = train_step,
) -> tuple[StepState, StageLog, int]:
    """Build the state and run ``step`` once under ``meter`` and a FLOP counter: (state, stages, FLOPs)."""
    stages = StageLog(meter)
    with FlopCounterMode(display=False, custom_mapping=_IN_PLACE_FLOPS) as counter:
        state = build_state(spec, model_name, shape, registries, stages, seed)
        stages.end()
        # Count the step's FLOPs, not the optimiser priming above.
        counter.flop_counts.clear()
        step(state, stages)
    stages.whole_step()
    return state, stages, counter.get_total_flops()

