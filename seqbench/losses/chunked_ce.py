"""Exact softmax cross-entropy over items 1..N without materialising the n x N logits.

Forward walks the catalogue in tiles (a chunk of items x a block of rows), keeping only a running
per-row logsumexp; the positive logit is one dot product per row. Backward recomputes each tile's
logits, turns them into ``g * softmax`` in place and accumulates ``dX += P E_c`` and
``dE_c += P^T X`` (and the bias gradient); the ``-1`` of the positive class is added at the end
with one ``index_add``.

Why tiles and not whole n x chunk slabs: every elementwise pass (max, exp, sum) over a slab that
does not fit in cache is bound by memory bandwidth, and the loss needs about eight of them per
element. A 2048 x 2048 float32 tile (16 MiB) stays in this CPU's L3 between the matmul that
writes it and the passes that read it, which makes the chunked loss faster than the dense one
even though it does one extra X E^T matmul in backward. One tile buffer is reused throughout
(``out=``) so the allocator is not asked for a fresh block per tile.

Peak extra memory: one tile buffer + O(n) vectors + the gradients themselves.

``fused_cross_entropy`` is the third way, for when the n x N logits fit in memory (where ``auto``
would pick dense): the same strips-in-cache passes, but the exponentials are kept for backward
instead of recomputed, so it does dense's 6 n N d FLOPs with about one pass over the n x N memory
each way, where torch's dense cross-entropy makes about five.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

DEFAULT_CHUNK = 2048  # items per tile
ROW_BLOCK = 2048  # rows per tile
# On CUDA a 2048 x 2048 tile is far too small: at 1e6 items the tile loop is thousands of kernel
# launches. There the tile takes up to this share of the free memory (all rows, as many items as
# fit, never fewer than ``chunk``): fewer, bigger tiles.
CUDA_TILE_MEMORY_SHARE = 0.25


def tile_shape(n: int, num_items: int, chunk: int, device: torch.device, element_bytes: int = 4) -> tuple[int, int]:
    """(rows, items) of one logits tile: cache-sized on CPU, sized by free memory on CUDA."""
    if device.type != "cuda":
        return min(n, ROW_BLOCK), min(chunk, num_items)
    free, _ = torch.cuda.mem_get_info(device)
    return cuda_tile_shape(n, num_items, chunk, free, element_bytes)


def cuda_tile_shape(n: int, num_items: int, chunk: int, free_bytes: int, element_bytes: int = 4) -> tuple[int, int]:
    budget = int(free_bytes * CUDA_TILE_MEMORY_SHARE) // element_bytes  # tile elements
    rows = max(1, min(n, budget // max(1, min(chunk, num_items))))
    items = max(min(chunk, num_items), min(num_items, budget // rows))
    return rows, items


def _spans(start: int, stop: int, step: int) -> Iterator[tuple[int, int]]:
    for lo in range(start, stop, step):
        yield lo, min(lo + step, stop)


def _tile_logits(x: Tensor, table: Tensor, bias: Tensor | None, items: tuple[int, int], buffer: Tensor) -> Tensor:
    """Logits of the rows of ``x`` against items items[0]..items[1]-1, written into ``buffer``."""
    start, stop = items
    logits = buffer[: x.shape[0] * (stop - start)].view(x.shape[0], stop - start)
    torch.mm(x, table[start:stop].T, out=logits)
    if bias is not None:
        logits.add_(bias[start:stop])
    return logits


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor, chunk: int
    ) -> Tensor:
        n, num_items = x.shape[0], table.shape[0] - 1
        row_block, chunk = tile_shape(n, num_items, chunk, x.device, x.element_size())
        buffer = x.new_empty(row_block * chunk)
        # Running sums over many chunks are kept in float64: n numbers, and float32 drifts by
        # ~1e-7 per chunk, which would break the 1e-5 agreement with dense at small chunks.
        lse = x.new_full((n,), float("-inf"), dtype=torch.float64)
        for items in _spans(1, num_items + 1, chunk):
            for lo, hi in _spans(0, n, row_block):
                logits = _tile_logits(x[lo:hi], table, bias, items, buffer)
                peak = logits.amax(dim=1)
                # logsumexp in place: the buffer is scratch, a library logsumexp would allocate
                part = logits.sub_(peak[:, None]).exp_().sum(dim=1).log_().add_(peak)
                lse[lo:hi] = torch.logaddexp(lse[lo:hi], part.double())
        lse = lse.to(x.dtype)
        positive = (x * table[targets]).sum(-1)
        if bias is not None:
            positive = positive + bias[targets]
        ctx.save_for_backward(x, table, bias, targets, lse)
        ctx.tile = (row_block, chunk)  # backward walks the same tiles
        return lse - positive

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, table, bias, targets, lse = ctx.saved_tensors
        want_x, want_table, want_bias = ctx.needs_input_grad[:3]
        n, num_items = x.shape[0], table.shape[0] - 1
        grad = grad.to(x.dtype)
        # g * exp(s - lse) = exp(s - (lse - log g)) when every g > 0 (the usual mean): one pass less.
        # Checking that reads the GPU's result on the host, so only CPU takes the shortcut.
        positive_grad = x.device.type == "cpu" and bool((grad > 0).all())
        shift = lse - grad.log() if positive_grad else lse
        row_block, chunk = ctx.tile
        buffer = x.new_empty(row_block * chunk)
        grad_x = torch.zeros_like(x, dtype=torch.float64) if want_x else None
        grad_table = table.new_empty(table.shape) if want_table else None
        grad_bias = bias.new_empty(bias.shape) if (want_bias and bias is not None) else None
        for start, stop in _spans(1, num_items + 1, chunk):
            for lo, hi in _spans(0, n, row_block):
                probs = _tile_logits(x[lo:hi], table, bias, (start, stop), buffer)
                probs.sub_(shift[lo:hi, None]).exp_()  # g_i * softmax_ij
                if not positive_grad:
                    probs.mul_(grad[lo:hi, None])
                if grad_x is not None:
                    grad_x[lo:hi] += probs @ table[start:stop]  # n x d float32 into the float64 sum
                if grad_table is not None:
                    if lo == 0:
                        torch.mm(probs.T, x[lo:hi], out=grad_table[start:stop])
                    else:
                        grad_table[start:stop].addmm_(probs.T, x[lo:hi])
                if grad_bias is not None:
                    column_sums = probs.sum(dim=0)
                    grad_bias[start:stop] = column_sums if lo == 0 else grad_bias[start:stop] + column_sums
        # The positive class: d/ds_p of -s_p is -1, times the row's upstream gradient.
        if grad_x is not None:
            grad_x = (grad_x - grad[:, None] * table[targets]).to(x.dtype)
        if grad_table is not None:
            grad_table[0] = 0  # padding row is never scored
            grad_table.index_add_(0, targets, -grad[:, None] * x)
        if grad_bias is not None:
            grad_bias[0] = 0
            grad_bias.index_add_(0, targets, -grad)
        return grad_x, grad_table, grad_bias, None, None


class _FusedCrossEntropy(torch.autograd.Function):
    """The logits kept (as dense does), but produced and used strip by strip: a strip of rows x
    all items is written by one matmul and turned into ``exp(s - max)`` while it is in cache;
    backward scales it by ``g / sum`` and feeds it to both gradient matmuls. No recomputation
    (6 n N d FLOPs against chunked's 8), one pass over the n x N memory each way (against
    dense's five or so)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
        n, num_items = x.shape[0], table.shape[0] - 1
        rows = strip_rows(n, num_items, x.device, x.element_size())
        exps = x.new_empty(n, num_items)
        peak, total = x.new_empty(n), x.new_empty(n)
        items = table[1:]
        for lo, hi in _spans(0, n, rows):
            strip = exps[lo:hi]
            torch.mm(x[lo:hi], items.T, out=strip)
            if bias is not None:
                strip.add_(bias[1:])
            torch.amax(strip, dim=1, out=peak[lo:hi])
            strip.sub_(peak[lo:hi, None]).exp_()
            torch.sum(strip, dim=1, out=total[lo:hi])
        positive = (x * table[targets]).sum(-1)
        if bias is not None:
            positive = positive + bias[targets]
        ctx.save_for_backward(x, table, bias, targets, exps, total)
        return total.log() + peak - positive

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, table, bias, targets, exps, total = ctx.saved_tensors
        want_x, want_table, want_bias = ctx.needs_input_grad[:3]
        n, num_items = exps.shape
        grad = grad.to(x.dtype)
        scale = grad / total  # g_i / sum_j exp(s_ij - max_i): exps x scale = g x softmax
        rows = strip_rows(n, num_items, x.device, x.element_size())
        buffer = x.new_empty(min(rows, n) * num_items)
        items = table[1:]
        grad_x = x.new_empty(x.shape) if want_x else None
        grad_table = torch.zeros_like(table) if want_table else None
        grad_bias = torch.zeros_like(bias) if (want_bias and bias is not None) else None
        for lo, hi in _spans(0, n, rows):
            probs = torch.mul(exps[lo:hi], scale[lo:hi, None], out=buffer[: (hi - lo) * num_items].view(hi - lo, num_items))
            if grad_x is not None:
                torch.mm(probs, items, out=grad_x[lo:hi])
            if grad_table is not None:
                grad_table[1:].addmm_(probs.T, x[lo:hi])
            if grad_bias is not None:
                grad_bias[1:] += probs.sum(dim=0)
        if grad_x is not None:
            grad_x -= grad[:, None] * table[targets]
        if grad_table is not None:
            grad_table.index_add_(0, targets, -grad[:, None] * x)
        if grad_bias is not None:
            grad_bias.index_add_(0, targets, -grad)
        return grad_x, grad_table, grad_bias, None


# One strip of the fused loss on CPU (rows x all items): one core's L2 here. Measured at LastFM's
# shape (5,900 x 3,646, d 64, 1 thread, fwd+bwd CPU s): 0.125-1 MiB 0.24-0.27, 2 MiB 0.27-0.30,
# 4-16 MiB 0.34-0.35 (chunked 0.34, dense 0.54).
STRIP_BYTES = 512 * 2**10


def strip_rows(n: int, num_items: int, device: torch.device, element_bytes: int = 4) -> int:
    """Rows per strip of the fused loss: cache-sized on CPU (never under 16 rows, a matmul's
    worth); on CUDA all rows at once (the memory is there: it holds the whole n x N anyway)."""
    if device.type == "cuda":
        return max(1, n)
    return max(16, STRIP_BYTES // (element_bytes * max(1, num_items)))


def fused_cross_entropy(x: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
    """The same per-row loss as :func:`chunked_cross_entropy`, with the n x N logits kept in memory."""
    return _FusedCrossEntropy.apply(x, table, bias, targets)


def chunked_cross_entropy(
    x: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor, chunk: int = DEFAULT_CHUNK
) -> Tensor:
    """Per-row -s_t + logsumexp_{j=1..N} s_j with s_j = <x, e_j> (+ b_j): n x d -> n.

    ``table`` is the full (N + 1) x d embedding table, row 0 (padding) excluded from the softmax;
    ``targets`` are item ids in 1..N; ``chunk`` is the number of items per tile.
    """
    return _ChunkedCrossEntropy.apply(x, table, bias, targets, chunk)


def dense_cross_entropy(x: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
    """The same loss through the full n x N logits matrix (the reference implementation)."""
    logits = x @ table[1:].T
    if bias is not None:
        logits = logits + bias[1:]
    return torch.nn.functional.cross_entropy(logits, targets - 1, reduction="none")
