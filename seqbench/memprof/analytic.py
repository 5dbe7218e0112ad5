"""Closed-form memory of the dense logits term, the part of full cross-entropy that scales with B x L x N.

Dense CE scores every loss position against every item: an n x N logits matrix, n = B x L for
``cce`` (every timestamp) and n = B for ``ce`` (last timestamp). At the peak of the backward pass
three n x N float matrices are alive at once: the log-softmax output saved by the forward pass,
the gradient arriving at it from the NLL term, and the gradient it produces for the logits. So the
logits term costs ``copies x n x N x bytes`` with ``copies = 3`` in float32.

Everything else that grows with N is per item, not per (position, item): the embedding row, its
Adam moments (2 rows) — ``PARAMETER_COPIES = 3`` rows of d floats alive at that peak (the row's
gradient is produced later, by the matmul's backward, after the logits buffers are gone).
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT32_BYTES = 4
DENSE_LIVE_COPIES = 3
PARAMETER_COPIES = 3  # the item embedding row + Adam's two moments
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class DenseLogits:
    batch_size: int
    max_len: int
    hidden: int
    bytes_per_element: int = FLOAT32_BYTES
    live_copies: int = DENSE_LIVE_COPIES
    all_timestamps: bool = True  # cce: every position; ce: the last one only

    @property
    def positions(self) -> int:
        return self.batch_size * (self.max_len if self.all_timestamps else 1)

    def logits_bytes(self, catalog: int) -> int:
        """copies x n x N x bytes: the dense logits term at one catalog size."""
        return self.live_copies * self.positions * catalog * self.bytes_per_element

    def slope(self) -> int:
        """Bytes of peak memory per extra item: the logits term plus the item's parameter rows."""
        per_item_logits = self.live_copies * self.positions * self.bytes_per_element
        per_item_parameters = PARAMETER_COPIES * self.hidden * self.bytes_per_element
        return per_item_logits + per_item_parameters

    def peak_difference(self, small_catalog: int, large_catalog: int) -> int:
        """Predicted growth of the step's peak from one catalog size to a larger one."""
        return self.slope() * (large_catalog - small_catalog)


def logits_elements(batch_size: int, max_len: int, catalog: int) -> int:
    """B x L x N in Python integers (no overflow here; callers compare it with int64 limits)."""
    return batch_size * max_len * catalog


def overflows_int64(batch_size: int, max_len: int, catalog: int, bytes_per_element: int = 8) -> bool:
    """True when a B x L x N tensor of the widest element (8 bytes) has more bytes than int64 counts."""
    return logits_elements(batch_size, max_len, catalog) * bytes_per_element > INT64_MAX


def sce_default_buckets(positions: int) -> int:
    """The spec's default n_b = b_x = int(2 sqrt(n))."""
    return int(2 * positions**0.5)


def sce_loss_elements(positions: int, catalog: int, items_per_bucket: int = 256) -> int:
    """Elements of SCE's per-step tensors: bucket logits n_b x b_x x b_y plus centre scores n_b x (n + N).

    With dense CE's ``3 x n x N`` this gives the factor by which SCE's loss stage should be
    smaller; the measured factor is somewhat lower because SCE keeps a few of these tensors (the
    masked logits, their gradient) alive together.
    """
    buckets = sce_default_buckets(positions)
    per_bucket_positions = min(buckets, positions)
    bucket_items = min(items_per_bucket, catalog)
    return buckets * per_bucket_positions * bucket_items + buckets * (positions + catalog)
