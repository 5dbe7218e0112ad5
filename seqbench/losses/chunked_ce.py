"""Exact softmax cross-entropy over items 1..N without materialising the n x N logits.

Forward walks the catalogue in chunks of items, keeping only a running per-row logsumexp; the
positive logit is one dot product per row. Backward recomputes each chunk's logits, turns them into
``g * softmax`` in place and accumulates ``dX += P E_c`` and writes ``dE_c = P^T X`` (and the bias
gradient); the ``-1`` of the positive class is added at the end with one ``index_add``.

Peak extra memory is one n x chunk buffer (reused across chunks through ``out=`` so the allocator
is not asked for a fresh large block per chunk) plus O(n) vectors and the gradients themselves.
The price is one extra X E^T matmul in backward compared with the dense loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

DEFAULT_CHUNK = 8192


def _chunk_logits(x: Tensor, table: Tensor, bias: Tensor | None, start: int, stop: int, buffer: Tensor) -> Tensor:
    """Logits of items start..stop-1 for every row, written into (a view of) ``buffer``."""
    width = stop - start
    logits = buffer[: x.shape[0] * width].view(x.shape[0], width)
    torch.mm(x, table[start:stop].T, out=logits)
    if bias is not None:
        logits.add_(bias[start:stop])
    return logits


def _chunks(num_items: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk, num_items + 1)) for start in range(1, num_items + 1, chunk)]


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor, chunk: int
    ) -> Tensor:
        num_items = table.shape[0] - 1
        spans = _chunks(num_items, chunk)
        buffer = x.new_empty(x.shape[0] * min(chunk, num_items))
        lse = x.new_full((x.shape[0],), float("-inf"))
        for start, stop in spans:
            logits = _chunk_logits(x, table, bias, start, stop, buffer)
            peak = logits.amax(dim=1)
            # logsumexp in place: the buffer is scratch, a library logsumexp would allocate n x chunk
            part = logits.sub_(peak[:, None]).exp_().sum(dim=1).log_().add_(peak)
            lse = torch.logaddexp(lse, part)
        positive = (x * table[targets]).sum(-1)
        if bias is not None:
            positive = positive + bias[targets]
        ctx.save_for_backward(x, table, bias, targets, lse)
        ctx.chunk = chunk
        return lse - positive

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, table, bias, targets, lse = ctx.saved_tensors
        want_x, want_table, want_bias = ctx.needs_input_grad[:3]
        num_items = table.shape[0] - 1
        grad = grad.to(x.dtype)
        buffer = x.new_empty(x.shape[0] * min(ctx.chunk, num_items))
        grad_x = torch.zeros_like(x) if want_x else None
        grad_table = table.new_empty(table.shape) if want_table else None
        grad_bias = bias.new_empty(bias.shape) if (want_bias and bias is not None) else None
        for start, stop in _chunks(num_items, ctx.chunk):
            probs = _chunk_logits(x, table, bias, start, stop, buffer)
            probs.sub_(lse[:, None]).exp_().mul_(grad[:, None])  # g_i * softmax_ij
            if grad_x is not None:
                grad_x.addmm_(probs, table[start:stop])
            if grad_table is not None:
                torch.mm(probs.T, x, out=grad_table[start:stop])
            if grad_bias is not None:
                torch.sum(probs, dim=0, out=grad_bias[start:stop])
        # The positive class: d/ds_p of -s_p is -1, times the row's upstream gradient.
        if grad_x is not None:
            grad_x.sub_(grad[:, None] * table[targets])
        if grad_table is not None:
            grad_table[0] = 0  # padding row is never scored
            grad_table.index_add_(0, targets, -grad[:, None] * x)
        if grad_bias is not None:
            grad_bias[0] = 0
            grad_bias.index_add_(0, targets, -grad)
        return grad_x, grad_table, grad_bias, None, None


def chunked_cross_entropy(
    x: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor, chunk: int = DEFAULT_CHUNK
) -> Tensor:
    """Per-row -s_t + logsumexp_{j=1..N} s_j with s_j = <x, e_j> (+ b_j): n x d -> n.

    ``table`` is the full (N + 1) x d embedding table, row 0 (padding) excluded from the softmax;
    ``targets`` are item ids in 1..N.
    """
    return _ChunkedCrossEntropy.apply(x, table, bias, targets, chunk)


def dense_cross_entropy(x: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
    """The same loss through the full n x N logits matrix (the reference implementation)."""
    logits = x @ table[1:].T
    if bias is not None:
        logits = logits + bias[1:]
    return torch.nn.functional.cross_entropy(logits, targets - 1, reduction="none")
