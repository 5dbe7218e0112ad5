"""Run a training step on fake tensors, answering data-dependent questions from small real shadows.

``FakeTensorMode`` knows every tensor's shape but none of its values, so an operator whose output
*shape* depends on values (``nonzero``, boolean-mask indexing, ``masked_select``) or a Python branch
on a value (``.item()``, ``bool(t.any())``) cannot run on it. Losses do both: positions are picked
with masks, negatives are resampled while they collide with the history. The shadow mode below
keeps a real copy ("shadow") of every *small* tensor whose inputs are all known: integer inputs,
masks, sampled negatives, small parameters. Those are cheap to compute for real, and they are
exactly the tensors that such questions are asked about, so the answers are exact. Big tensors (an
N x d item table, a B x L x N logits matrix) stay fake and cost nothing.

When a data-dependent operator meets a tensor without a shadow, its unknown small inputs are taken
as all ones (every mask entry true, every element non-zero): output sizes become their upper
bound, so the prediction errs on the side of more memory, and the assumption is recorded. A Python
branch on an unknown value cannot be bounded that way and raises :class:`PredictionError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
    FakeTensorMode,
)
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.weak import WeakIdKeyDictionary

# Tensors up to this many elements get a real shadow (128 MiB of int64 at most per tensor):
# large enough for B x L x K sampled negatives, far below any item table that needs predicting.
SHADOW_LIMIT = 1 << 24
# Floats rarely decide a size, and computing them for real is what makes prediction slow (a mid-size
# item table would drag the whole encoder and every logits tile along): shadow only tiny ones.
FLOAT_SHADOW_LIMIT = 1 << 16


# Operators that read only the shape, dtype and device of their tensor arguments, never values:
# their results are known even when the arguments are not (autograd seeds backward with ones_like).
VALUE_FREE = {
    torch.ops.aten.ones_like.default,
    torch.ops.aten.zeros_like.default,
    torch.ops.aten.empty_like.default,
    torch.ops.aten.full_like.default,
    torch.ops.aten.new_ones.default,
    torch.ops.aten.new_zeros.default,
    torch.ops.aten.new_full.default,
    torch.ops.aten.new_empty.default,
    torch.ops.aten.new_empty_strided.default,
}


class PredictionError(RuntimeError):
    """The step branches in Python on a value that prediction cannot know."""


class OpBudgetExceeded(RuntimeError):
    """More operators than the caller allowed: the step loops over the catalog (chunked losses)."""


class ShadowMode(TorchDispatchMode):
    """Sits above ``FakeTensorMode``: fake results for everything, real values for small tensors."""

    def __init__(self, fake_mode: FakeTensorMode, limit: int = SHADOW_LIMIT, op_budget: int | None = None) -> None:
        super().__init__()
        self.op_budget = op_budget
        self.ops = 0
        self.fake_mode = fake_mode
        self.limit = limit
        self.assumptions: set[str] = set()
        self._guessed = False  # set when a data-dependent operator had to guess an unknown input
        self._real: WeakIdKeyDictionary = WeakIdKeyDictionary()
        # A storage written by an operator with unknown inputs: shadows of tensors on it are stale.
        self._stale: WeakIdKeyDictionary = WeakIdKeyDictionary()

    # -- bookkeeping -------------------------------------------------------------------------
    def _shadow_of(self, tensor: torch.Tensor) -> torch.Tensor | None:
        if not isinstance(tensor, FakeTensor):
            return tensor  # a real constant (e.g. ``t[mask] = True``) about to be lifted: its own value
        if tensor.untyped_storage() in self._stale:
            return None
        return self._real.get(tensor)

    def _known(self, tensors: list[torch.Tensor]) -> bool:
        return all(self._shadow_of(t) is not None for t in tensors)

    def _real_args(self, args: Any, kwargs: Any, unknown_as_ones: bool) -> tuple[Any, Any]:
        def convert(value: Any) -> Any:
            if not isinstance(value, torch.Tensor):
                return value
            shadow = self._shadow_of(value)
            if shadow is not None:
                return shadow
            if not unknown_as_ones:
                # A value-free operator: any real tensor with this metadata will do (new_* read
                # only the dtype, so a big one is replaced by an empty one).
                if value.numel() <= self.limit:
                    return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype)
                return torch.empty(0, dtype=value.dtype)
            # Only integer and boolean values decide output sizes (masks, indices); floats go meta.
            guessable = not (value.is_floating_point() or value.is_complex())
            if unknown_as_ones and guessable and value.numel() <= self.limit:
                self._guessed = True
                return torch.ones(value.shape, dtype=value.dtype)
            # Too big to materialise: a meta tensor still carries shape and dtype.
            return torch.empty(value.shape, dtype=value.dtype, device="meta")

        return tree_map(convert, args), tree_map(convert, kwargs)

    def _mark_written(self, func: Any, args: Any, kwargs: Any) -> None:
        """An operator with unknown inputs mutated some arguments: their shadows no longer hold."""
        schema = func._schema
        for position, argument in enumerate(schema.arguments):
            if argument.alias_info is None or not argument.alias_info.is_write:
                continue
            value = args[position] if position < len(args) else kwargs.get(argument.name)
            for tensor in tree_flatten(value)[0]:
                if isinstance(tensor, torch.Tensor):
                    self._stale[tensor.untyped_storage()] = True

    def _attach(self, fake_out: Any, real_out: Any) -> None:
        fakes, reals = tree_flatten(fake_out)[0], tree_flatten(real_out)[0]
        for fake, real in zip(fakes, reals):
            if isinstance(fake, torch.Tensor) and isinstance(real, torch.Tensor):
                self._real[fake] = real

    def _small(self, out: Any) -> bool:
        return all(t.numel() <= self._limit_for(t) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))

    def _limit_for(self, tensor: torch.Tensor) -> int:
        if tensor.is_floating_point() or tensor.is_complex():
            return min(self.limit, FLOAT_SHADOW_LIMIT)
        return self.limit

    def _to_fake(self, real_out: Any) -> Any:
        """Fresh fake tensors of the real results' shapes, allocated through the outer modes."""

        def convert(value: Any) -> Any:
            if not isinstance(value, torch.Tensor):
                return value
            return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype)

        return tree_map(convert, real_out)

    # -- dispatch ----------------------------------------------------------------------------
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        self.ops += 1
        if self.op_budget is not None and self.ops > self.op_budget:
            raise OpBudgetExceeded(f"more than {self.op_budget} operators")
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        known = func in VALUE_FREE or self._known(tensors)
        try:
            fake_out = func(*args, **kwargs)
        except (DynamicOutputShapeException, DataDependentOutputException):
            return self._data_dependent(func, args, kwargs, known)
        if known and self._small(fake_out):
            with _disable_current_modes():  # stand-ins, if any, must be real tensors
                real_args, real_kwargs = self._real_args(args, kwargs, unknown_as_ones=False)
                real_out = func(*real_args, **real_kwargs)
            self._attach(fake_out, real_out)
        elif not known:
            self._mark_written(func, args, kwargs)
        return fake_out

    def _data_dependent(self, func: Any, args: Any, kwargs: Any, known: bool) -> Any:
        if not known and func is torch.ops.aten._local_scalar_dense.default:
            if args[0].is_floating_point():
                # A float read back (a logged diagnostic, a loss value) cannot size a tensor; an
                # integer or boolean could (a count, a branch), so those are refused below.
                return math.nan
            raise PredictionError("the step branches on a value computed from large tensors; use --mode measure")
        self._guessed = False
        with _disable_current_modes():  # stand-ins for unknown tensors must be real, not fake
            real_args, real_kwargs = self._real_args(args, kwargs, unknown_as_ones=not known)
            try:
                real_out = func(*real_args, **real_kwargs)
            except RuntimeError as error:  # also torch's "not implemented for this dtype" errors (a subclass)
                raise PredictionError(f"{func.__name__} needs values that prediction cannot know ({error})") from error
        if self._guessed:
            self.assumptions.add(f"upper bound: unknown mask in {func.__name__} taken as all true")
        if not isinstance(real_out, torch.Tensor | tuple | list):
            return real_out  # a Python scalar from .item(): the exact value when known
        fake_out = self._to_fake(real_out)
        if known and self._small(fake_out):
            self._attach(fake_out, real_out)
        return fake_out


# Packed-sequence RNN entry points whose C++ composite reads ``batch_sizes`` (argument 1) through a
# raw data pointer before any operator is dispatched: a fake tensor there has no data to read.
PACKED_RNN_FUNCTIONS = {"gru", "lstm", "rnn_tanh", "rnn_relu"}


class PackedRnnMode(TorchFunctionMode):
    """Hands the packed RNNs the real shadow of their (small, CPU) ``batch_sizes``."""

    def __init__(self, shadow: ShadowMode) -> None:
        super().__init__()
        self.shadow = shadow

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") == "_pad_packed_sequence":
            return self._pad_packed(*args, **kwargs)
        if getattr(func, "__name__", "") == "_pack_padded_sequence":
            return self._pack_padded(*args, **kwargs)
        if getattr(func, "__name__", "") in PACKED_RNN_FUNCTIONS and len(args) > 1:
            batch_sizes = args[1]
            if isinstance(batch_sizes, torch.Tensor) and batch_sizes.dtype == torch.int64:
                real = self.shadow._shadow_of(batch_sizes)
                if real is None:
                    raise PredictionError("a packed RNN's batch sizes are unknown; use --mode measure")
                args = (args[0], real, *args[2:])
        return func(*args, **kwargs)

    def _known_sizes(self, tensor: torch.Tensor) -> list[int]:
        real = self.shadow._shadow_of(tensor)
        if real is None:
            raise PredictionError("a packed sequence's lengths are unknown; use --mode measure")
        return [int(value) for value in real.tolist()]

    def _pack_padded(
        self, data: torch.Tensor, lengths: torch.Tensor, batch_first: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ATen's _pack_padded_sequence (sequences sorted by length): one slice per time step, concatenated.

        Its backward in C++ reads ``batch_sizes`` through a raw pointer; built from plain slicing
        and ``cat`` here, forward and backward are ordinary dispatched operators.
        """
        rows = self._known_sizes(lengths)
        time_major = data.transpose(0, 1) if batch_first else data
        steps = [sum(1 for row in rows if row > step) for step in range(max(rows))]
        packed = torch.cat([time_major[step, :size] for step, size in enumerate(steps)])
        return packed, torch.tensor(steps)

    def _pad_packed(
        self, data: torch.Tensor, batch_sizes: torch.Tensor, batch_first: bool, padding_value: float, total_length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ATen's _pad_packed_sequence (full output, one slice copy per time step) in dispatched ops.

        The C++ composite writes its ``lengths`` result through a raw pointer, which a fake tensor
        does not have; the same copies done here are differentiable and allocate the same output.
        """
        steps = self._known_sizes(batch_sizes)
        batch = steps[0]
        output = data.new_full((total_length, batch, *data.shape[1:]), padding_value)
        offset = 0
        for step, size in enumerate(steps):
            output[step, :size] = data[offset : offset + size]
            offset += size
        lengths = torch.tensor([sum(1 for size in steps if size > row) for row in range(batch)])
        return (output.transpose(0, 1) if batch_first else output), lengths


@contextmanager
def predicting(limit: int = SHADOW_LIMIT, op_budget: int | None = None) -> Iterator[ShadowMode]:
    """Fake tensors for everything created inside, with shadows for the small ones.

    Enter the allocation tracker *inside* this context, so that it also sees the tensors the
    shadow mode makes for data-dependent results.
    """
    fake_mode = FakeTensorMode(allow_non_fake_inputs=False)
    shadow = ShadowMode(fake_mode, limit, op_budget)
    with fake_mode, shadow, PackedRnnMode(shadow):
        yield shadow
