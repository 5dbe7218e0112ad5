"""Peak memory, time and FLOPs of one training step of a model with a loss, measured or predicted.

One step = build the model, the loss and Adam (with its state already allocated, as in every step
after the first), draw a batch of full windows, encoder forward, loss forward, backward, optimiser
step. Everything is created inside the memory meter, so the figures are bytes of live tensors
that this step needs, split into stages:

- held by a stage (``held_bytes``): parameters, optimiser state, inputs, encoder activations
  (what the forward pass keeps for backward), gradients;
- transient peak of a stage above what was live when it began (``transient_bytes``): loss
  forward, loss backward (until the gradient reaches the encoder output), encoder backward,
  optimiser step;
- ``whole step``: the highest live total at any moment, the figure a GPU must hold.

*Measured* runs the step for real (CPU: the allocation tracker; CUDA: the caching allocator's
peak statistics, reset per stage). *Predicted* runs the very same code on fake tensors
(:mod:`seqbench.memprof.predict`), which allocates nothing, so any catalog answers in seconds.
*Auto* predicts first and measures when the prediction fits in the memory available.

This module holds the modes; the loss-spec language is :mod:`seqbench.losses.spec`, the meters
:mod:`seqbench.memprof.meters`, the step itself :mod:`seqbench.memprof.step`.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal, TypeGuard

import torch

from seqbench import devices
from seqbench.errors import InputError, unknown_name
from seqbench.losses.spec import LossSpec, parse_loss_spec, split_loss_list
from seqbench.measure.allocations import AllocationTracker
from seqbench.memprof.meters import CudaMeter, Meter, StageRecord, TrackerMeter
from seqbench.memprof.predict import OpBudgetExceeded, PredictionError, predicting
from seqbench.memprof.step import (
    Registries,
    StepShape,
    StepState,
    default_registries,
    tracked_step,
)
from seqbench.memprof.step import train_step as _train_step

# What the profiler's callers import from here (the CLI, benchmarks, tests).
__all__ = [
    "MODES", "LossSpec", "Mode", "ProfileRecord", "Registries", "StageRecord", "StepShape",
    "default_registries", "is_mode", "parse_loss_spec", "profile_step", "split_loss_list",
]

Mode = Literal["measure", "predict", "auto"]
MODES: tuple[str, ...] = ("measure", "predict", "auto")


def is_mode(value: str) -> TypeGuard[Mode]:
    """Whether ``value`` names a mode (narrows a command-line string to :data:`Mode`)."""
    return value in MODES


# A predicted step that dispatches more operators than this loops over the catalog (a tiled
# chunked CE: ~3,400 tiles at 10^6 items); it is then extrapolated from FOLD_CATALOGS.
# A plain step is ~3,000 operators.
FOLD_OP_BUDGET = 12_000
FOLD_CATALOGS = (2**13, 2**14, 2**15)
# Auto mode measures on CPU only when the prediction needs at most this share of free RAM:
# the OS, the shadow copies and allocator slack need the rest.
CPU_MEMORY_FRACTION = 0.5
CUDA_MEMORY_FRACTION = 0.9
# Auto mode also predicts (rather than measures) a step whose FLOPs would take more than a few
# seconds: the chunked exact CE fits in memory at any catalog but costs O(B L N d) compute.
FLOP_BUDGET = {"cpu": 1e11, "cuda": 1e14}
# On CPU a step is also memory-bound (Adam and the dense item-table gradient sweep every byte):
# past this size a measured step takes tens of seconds, so auto predicts it instead.
CPU_MEASURE_LIMIT_BYTES = 2**30


# -- what comes back -------------------------------------------------------------------------------
@dataclass
class ProfileRecord:
    loss: str
    model: str
    catalog: int
    batch_size: int
    max_len: int
    hidden: int
    peak_bytes: int | None  # None when the step did not run (OOM, error)
    mode: str  # "measured" | "predicted"
    device: str
    status: str = "ok"  # "ok" | "OOM" | "error"
    seconds: float | None = None  # one warm step, measured mode only
    flops: int | None = None
    predicted_bytes: int | None = None
    note: str = ""
    stages: list[StageRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        if self.seconds is None:
            del document["seconds"]
        if not self.stages:
            del document["stages"]
        return document



# -- modes -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    spec: LossSpec
    model: str
    shape: StepShape
    device: str
    breakdown: bool
    seed: int = 0


def _record(request: Request, mode: str, **values: Any) -> ProfileRecord:
    shape = request.shape
    return ProfileRecord(
        loss=request.spec.label,
        model=request.model,
        catalog=shape.catalog,
        batch_size=shape.batch_size,
        max_len=shape.max_len,
        hidden=shape.hidden,
        mode=mode,
        device=request.device,
        **values,
    )


def _is_oom(error: BaseException) -> bool:
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@contextmanager
def _fresh_rng() -> Iterator[None]:
    # The step seeds torch; the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        yield


def predict(request: Request, registries: Registries) -> ProfileRecord:
    """Fake-tensor step; above ``FOLD_ABOVE`` items, extrapolated from three smaller ones when affine."""
    if request.shape.catalog <= FOLD_CATALOGS[-1]:
        return _predict_direct(request, registries)
    try:
        return _predict_direct(request, registries, op_budget=FOLD_OP_BUDGET)
    except OpBudgetExceeded:
        # The step loops over item chunks: extrapolate from smaller catalogs if that is exact.
        return _predict_folded(request, registries) or _predict_direct(request, registries)


def _affine_at(xs: tuple[int, ...], ys: list[int], x: int) -> int | None:
    """y(x) on the line through the points, or None when the three points are not exactly collinear."""
    (x0, x1, x2), (y0, y1, y2) = xs, ys
    if (y1 - y0) * (x2 - x1) != (y2 - y1) * (x1 - x0):
        return None
    value = Fraction(y0) + Fraction(y1 - y0, x1 - x0) * (x - x0)
    return value.numerator // value.denominator if value.denominator == 1 else round(value)


def _predict_folded(request: Request, registries: Registries) -> ProfileRecord | None:
    """Why: loops over item chunks cost one dispatch per tile, so 10^6 items would take minutes.

    Peak memory and FLOPs are affine in N once every min(chunk, N)-style size has saturated; three
    predictions at FOLD_CATALOGS that lie exactly (to the byte) on one line, stage by stage, are
    extended to the requested catalog. Anything not exactly collinear falls back to a direct run.
    """
    points = [
        _predict_direct(replace(request, shape=replace(request.shape, catalog=catalog), breakdown=True), registries)
        for catalog in FOLD_CATALOGS
    ]
    if any(point.peak_bytes is None or point.flops is None for point in points):
        return None
    if len({tuple(stage.name for stage in point.stages) for point in points}) != 1:
        return None
    catalog = request.shape.catalog
    flops = _affine_at(FOLD_CATALOGS, [point.flops for point in points], catalog)  # type: ignore[misc]
    stages = []
    for index, stage in enumerate(points[0].stages[:-1]):  # "whole step" is rebuilt below
        values = []
        for attribute in ("held_bytes", "transient_bytes", "peak_bytes"):
            value = _affine_at(FOLD_CATALOGS, [getattr(p.stages[index], attribute) for p in points], catalog)
            if value is None:
                return None
            values.append(value)
        stages.append(StageRecord(stage.name, *values))
    if flops is None:
        return None
    # Each stage is affine in N, their maximum is not (another stage may take over): take it at N.
    peak = max(stage.peak_bytes for stage in stages)
    held = _affine_at(FOLD_CATALOGS, [p.stages[-1].held_bytes for p in points], catalog)
    if held is None:
        return None
    stages.append(StageRecord("whole step", held, peak, peak))
    sizes = "/".join(f"{n:,}" for n in FOLD_CATALOGS)
    notes = sorted({note for point in points for note in point.note.split("; ") if note})
    notes.append(f"extrapolated from fake-tensor steps at {sizes} items (affine to the byte)")
    kept = stages if request.breakdown else []
    return _record(request, "predicted", peak_bytes=peak, flops=flops, predicted_bytes=peak, note="; ".join(notes), stages=kept)


def _predict_direct(request: Request, registries: Registries, op_budget: int | None = None) -> ProfileRecord:
    try:
        with _fresh_rng(), predicting(op_budget=op_budget) as shadow:
            tracker = AllocationTracker()
            with tracker:
                _, stages, flops = tracked_step(
                    request.spec, request.model, request.shape, registries, TrackerMeter(tracker), request.seed, _train_step
                )
    except PredictionError as error:
        return _record(request, "predicted", peak_bytes=None, status="error", note=str(error))
    peak = stages.records[-1].peak_bytes
    note = "; ".join(sorted(shadow.assumptions))
    kept = stages.records if request.breakdown else []
    return _record(request, "predicted", peak_bytes=peak, flops=flops, predicted_bytes=peak, note=note, stages=kept)


def _meter_for(device: torch.device, tracker: AllocationTracker) -> Meter:
    return CudaMeter(device) if device.type == "cuda" else TrackerMeter(tracker)


def _timed_step(state: StepState, device: torch.device) -> float:
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    started = time.perf_counter()
    _train_step(state, None)
    synchronize()
    return time.perf_counter() - started


def measure(request: Request, registries: Registries) -> ProfileRecord:
    device = torch.device(request.device)
    state: StepState | None = None
    try:
        with _fresh_rng(), torch.device(device):
            tracker = AllocationTracker()
            meter = _meter_for(device, tracker)
            # On CUDA the allocator counts; the tracker (CPU only) would only add overhead.
            with tracker if device.type == "cpu" else _nothing():
                # _train_step is looked up here, at call time, so a test can replace it.
                state, stages, flops = tracked_step(
                    request.spec, request.model, request.shape, registries, meter, request.seed, _train_step
                )
            seconds = _timed_step(state, device)
    except Exception as error:
        if not _is_oom(error):
            raise
        return _record(request, "measured", peak_bytes=None, status="OOM", note=str(error).splitlines()[0][:200])
    finally:
        del state
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    peak = stages.records[-1].peak_bytes
    kept = stages.records if request.breakdown else []
    return _record(request, "measured", peak_bytes=peak, seconds=seconds, flops=flops, stages=kept)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def memory_bytes(device: str) -> int:
    """Free memory: the device's free bytes on CUDA, the OS's MemAvailable on CPU."""
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("cannot read MemAvailable from /proc/meminfo")


def available_bytes(device: str) -> int:
    """Memory a measured step may use: a share of free device memory or of the OS's MemAvailable."""
    fraction = CUDA_MEMORY_FRACTION if device.startswith("cuda") else CPU_MEMORY_FRACTION
    return int(memory_bytes(device) * fraction)


def _why_not_measure(predicted: ProfileRecord, device: str) -> str:
    """Auto mode's rule; an empty answer means measure."""
    assert predicted.peak_bytes is not None
    if predicted.peak_bytes > available_bytes(device):
        return "predicted: does not fit in free memory"
    if not device.startswith("cuda") and predicted.peak_bytes > CPU_MEASURE_LIMIT_BYTES:
        return "predicted: over 1 GiB, too slow to measure on CPU"
    budget = FLOP_BUDGET["cuda" if device.startswith("cuda") else "cpu"]
    if predicted.flops is not None and predicted.flops > budget:
        return f"predicted: over {budget:.0e} FLOPs, too slow to measure"
    return ""


def resolve_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (``auto`` resolved), as the shared resolution names it."""
    return str(devices.resolve_device(device))


def profile_step(
    model_name: str,
    loss_name: str,
    catalog: int,
    batch_size: int,
    max_len: int,
    hidden: int,
    mode: Mode = "auto",
    device: str = "auto",
    loss_params: dict[str, Any] | None = None,
    breakdown: bool = False,
    registries: Registries | None = None,
    seed: int = 0,
) -> ProfileRecord:
    """Profile one training step; ``loss_name`` may carry options, e.g. ``cce[chunked]``."""
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}: choose {', '.join(MODES)}")
    registries = registries or default_registries()
    spec = parse_loss_spec(loss_name)
    if spec.name not in registries.loss_names:
        raise InputError(unknown_name("loss", spec.name, registries.loss_names))
    if loss_params:
        spec = LossSpec(spec.label, spec.name, {**loss_params, **spec.params})
    shape = StepShape(catalog, batch_size, max_len, hidden)
    shape.validate()
    request = Request(spec, model_name, shape, resolve_device(device), breakdown, seed)
    if mode == "measure":
        return measure(request, registries)
    predicted = predict(request, registries)
    if mode == "predict" or predicted.peak_bytes is None:
        return predicted
    reason = _why_not_measure(predicted, request.device)
    if reason:
        predicted.note = "; ".join(filter(None, [predicted.note, reason]))
        return predicted
    measured = measure(request, registries)
    measured.predicted_bytes = predicted.peak_bytes
    return measured
