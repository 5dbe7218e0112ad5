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
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from fractions import Fraction
from typing import Any, Literal, Protocol

import torch
from torch.utils.flop_counter import FlopCounterMode

from seqbench.errors import InputError, unknown_name
from seqbench.losses.base import LossBatch
from seqbench.memprof.analytic import overflows_int64
from seqbench.memprof.predict import OpBudgetExceeded, PredictionError, predicting
from seqbench.memprof.tracker import AllocationTracker

Mode = Literal["measure", "predict", "auto"]
MODES: tuple[str, ...] = ("measure", "predict", "auto")
CE_LOSSES = ("ce", "cce")
# A predicted step that dispatches more operators than this loops over the catalog (a tiled
# chunked CE: ~3,400 tiles at 10^6 items); it is then extrapolated from FOLD_CATALOGS.
# A plain step is ~3,000 operators.
FOLD_OP_BUDGET = 12_000
FOLD_CATALOGS = (2**13, 2**14, 2**15)
CE_IMPLS = ("dense", "chunked", "auto")
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
# Names a model config may use for its width; the first one present is set to --hidden.
HIDDEN_FIELDS = ("hidden_size", "embedding_size")


# -- what to profile -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LossSpec:
    """A table row: ``cce[chunked]`` is loss ``cce`` with ``ce_impl=chunked``."""

    label: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)


def split_loss_list(text: str) -> list[str]:
    """Split on commas outside brackets, so ``sce[b_y=128],cce`` is two entries."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [part for part in parts if part]


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_loss_spec(text: str) -> LossSpec:
    """``name``, ``name[impl]`` (ce/cce) or ``name[key=value;key=value]``."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_-]+)\s*(?:\[(.*)\])?\s*", text)
    if match is None:
        raise InputError(f"bad loss {text!r}: write NAME, cce[chunked] or NAME[key=value;key=value]")
    name, inside = match.group(1), match.group(2)
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (inside or "").split(";"))):
        if "=" in item:
            key, value = (piece.strip() for piece in item.split("=", 1))
            params[key] = _parse_value(value)
        elif name in CE_LOSSES and item in CE_IMPLS:
            params["ce_impl"] = item
        else:
            raise InputError(f"bad loss option {item!r} in {text!r}: write key=value, or dense/chunked/auto for ce/cce")
    if name in CE_LOSSES:
        # A bare ce/cce is the dense baseline the table's ratios are taken against.
        params.setdefault("ce_impl", "dense")
    return LossSpec(label=text.strip(), name=name, params=params)


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


# -- what comes back -------------------------------------------------------------------------------
@dataclass
class StageRecord:
    name: str
    held_bytes: int  # live at the end of the stage minus live at its start
    transient_bytes: int  # the stage's peak minus live at its start
    peak_bytes: int  # the highest live total during the stage


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


# -- registries (injectable so the profiler can be tested without the real ones) ----------------
@dataclass
class Registries:
    build_model: Callable[..., Any]
    build_loss: Callable[..., Any]
    model_params: Callable[[str, int], dict[str, Any]]
    loss_names: tuple[str, ...]


def _real_model_params(model_name: str, hidden: int) -> dict[str, Any]:
    from seqbench.models.registry import model_class

    names = {f.name for f in fields(model_class(model_name).Config)}
    return {name: hidden for name in HIDDEN_FIELDS if name in names}


def default_registries() -> Registries:
    from seqbench.losses.registry import LOSS_NAMES, build_loss
    from seqbench.models.registry import build_model

    return Registries(build_model, build_loss, _real_model_params, tuple(LOSS_NAMES))


# -- memory meters ---------------------------------------------------------------------------------
class Meter(Protocol):
    def live(self) -> int: ...
    def peak(self) -> int: ...
    def reset_peak(self) -> None: ...


class TrackerMeter:
    """CPU and fake tensors: the dispatch-mode tracker of live storage bytes."""

    def __init__(self, tracker: AllocationTracker) -> None:
        self.tracker = tracker

    def live(self) -> int:
        return self.tracker.live_bytes

    def peak(self) -> int:
        return self.tracker.peak_bytes

    def reset_peak(self) -> None:
        self.tracker.reset_peak()


class CudaMeter:
    """CUDA: the caching allocator's own counters, relative to what was allocated before the step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline = torch.cuda.memory_allocated(device)

    def live(self) -> int:
        return torch.cuda.memory_allocated(self.device) - self.baseline

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device) - self.baseline

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)


class StageLog:
    """Contiguous stages: each begins where the previous ends, so their peaks cover the whole step."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.records: list[StageRecord] = []
        self._open: tuple[str, int] | None = None

    def begin(self, name: str) -> None:
        self.end()
        self._open = (name, self.meter.live())
        self.meter.reset_peak()

    def end(self) -> None:
        if self._open is None:
            return
        name, start = self._open
        peak, live = self.meter.peak(), self.meter.live()
        self.records.append(StageRecord(name, live - start, peak - start, peak))
        self._open = None

    def component(self, name: str, nbytes: int) -> None:
        """A size held at this moment (gradients), recorded without opening a stage."""
        self.records.append(StageRecord(name, nbytes, 0, self.meter.live()))

    def whole_step(self) -> StageRecord:
        self.end()
        peak = max(record.peak_bytes for record in self.records)
        whole = StageRecord("whole step", self.meter.live(), peak, peak)
        self.records.append(whole)
        return whole


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


def _build_state(
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


def _train_step(state: StepState, stages: StageLog | None) -> None:
    begin = stages.begin if stages is not None else (lambda name: None)
    begin("encoder activations")
    hidden = state.model(state.inputs)
    begin("loss forward")
    batch = LossBatch(
        hidden=hidden,
        positives=state.targets,
        item_embeddings=state.model.item_embeddings(),
        item_bias=state.model.item_bias(),
        history=state.history,
        generator=state.generator,
    )
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


def _tracked_step(
    spec: LossSpec, model_name: str, shape: StepShape, registries: Registries, meter: Meter, seed: int
) -> tuple[StepState, StageLog, int]:
    stages = StageLog(meter)
    with FlopCounterMode(display=False, custom_mapping=_IN_PLACE_FLOPS) as counter:
        state = _build_state(spec, model_name, shape, registries, stages, seed)
        stages.end()
        # Count the step's FLOPs, not the optimiser priming above.
        counter.flop_counts.clear()
        _train_step(state, stages)
    stages.whole_step()
    return state, stages, counter.get_total_flops()


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
                _, stages, flops = _tracked_step(
                    request.spec, request.model, request.shape, registries, TrackerMeter(tracker), request.seed
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
                state, stages, flops = _tracked_step(
                    request.spec, request.model, request.shape, registries, meter, request.seed
                )
            seconds = _timed_step(state, device)
    except Exception as error:  # noqa: BLE001 - only out-of-memory becomes a cell, the rest re-raises
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


def available_bytes(device: str) -> int:
    """Memory a measured step may use: a share of free device memory or of the OS's MemAvailable."""
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free * CUDA_MEMORY_FRACTION)
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(int(line.split()[1]) * 1024 * CPU_MEMORY_FRACTION)
    raise RuntimeError("cannot read MemAvailable from /proc/meminfo")


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
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda but no CUDA device is visible: use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"unknown device {device!r}: choose auto, cpu or cuda")
    return device


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
