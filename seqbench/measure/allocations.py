"""Peak bytes of live tensor storage, measured the same way on CPU, CUDA and fake tensors.

``AllocationTracker`` is a dispatch mode: every tensor an operator returns inside it is looked up
by its storage; a storage seen for the first time adds its size to the live total, and a weak
reference subtracts it when the storage is freed. So the figures mean "bytes of live tensors",
like ``torch.cuda.max_memory_allocated`` without allocator rounding, and they work under
``FakeTensorMode`` too, where nothing is allocated (that is how memory is *predicted*).
Storages created before the mode was entered are not counted: create what the step needs inside.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary


class AllocationTracker(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self._sizes: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self._track(value)
        return out

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage in self._sizes:
            return
        size = storage.nbytes()
        self._sizes[storage] = size
        self.live_bytes += size
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        weakref.finalize(storage, self._release, size)

    def _release(self, size: int) -> None:
        self.live_bytes -= size

    def adopt(self, tensors: Iterable[torch.Tensor]) -> None:
        """Count tensors that exist before the mode is entered as live (each storage once).

        Without this, an in-place operator on them (Adam's ``param.add_``, ``exp_avg.mul_``)
        returns a storage the tracker has never seen and counts it as a new allocation.
        """
        for tensor in tensors:
            self._track(tensor)

    def reset_peak(self) -> int:
        """Start a new stage: the peak restarts from what is live now; returns the old peak."""
        previous = self.peak_bytes
        self.peak_bytes = self.live_bytes
        return previous
