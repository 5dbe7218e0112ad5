"""CPU intra-op threads for one run, set for the run only.

``torch.set_num_threads`` is process-wide: a run that set it and never put it back would hand its
thread count to the next run of a local grid, whose numbers (reduction order) would then depend
on the grid's order. :func:`run_threads` pins the count for the ``with`` block and restores it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def run_threads(threads: int) -> Iterator[int]:
    """Use ``threads`` intra-op threads inside the block (0 = leave the process's count).

    Yields the count the block runs with, which is what a run record stores.
    """
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
