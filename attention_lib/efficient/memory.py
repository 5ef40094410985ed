"""Measuring the memory an attention call allocates, on any device.

``torch.cuda.max_memory_allocated`` answers "how much memory at most" on a GPU, but torch has
no such counter for the CPU, and process-level numbers (peak RSS) mix in the interpreter,
the allocator's caching and one-time initialisation. :func:`peak_memory` instead watches
every tensor that the operations inside a call create (a ``TorchDispatchMode``): it adds a
tensor's storage size when an operation creates it and subtracts it when the last tensor
using that storage is freed. The result is deterministic and the same on CPU and GPU:

* ``peak_bytes``: the largest total size of the tensors created by the call that were alive
  at the same time (the call's working memory, its output included);
* ``largest_bytes``: the largest single tensor it created -- for attention, whether an
  (Nq, Nk) matrix was ever allocated.

What it does not see: scratch buffers that a fused kernel allocates and frees inside one
operation (e.g. the per-thread tiles of SDPA's CPU flash kernel; small, but not zero), and
memory allocated outside torch. For those, measure peak RSS in a fresh process (see
``benchmarks/efficient.py``) or use ``torch.cuda.max_memory_allocated`` on a GPU.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["MemoryStats", "peak_memory"]


class MemoryStats(NamedTuple):
    """result: what the call returned; peak_bytes, largest_bytes: see the module docstring."""
    result: Any
    peak_bytes: int
    largest_bytes: int


class _Tracker(TorchDispatchMode):
    def __init__(self, existing: set):
        super().__init__()
        self.existing = existing  # storages alive before the call: not counted
        self.refs: dict = {}  # storage key -> [number of live tensors, nbytes]
        self.watchers: dict = {}  # id -> weakref whose callback releases the storage
        self.next_id = 0
        self.current = 0
        self.peak = 0
        self.largest = 0

    def _release(self, key, wid):
        self.watchers.pop(wid, None)
        entry = self.refs.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = (t.device, storage.data_ptr())
            if storage.data_ptr() == 0 or key in self.existing:
                continue
            if key not in self.refs:
                nbytes = storage.nbytes()
                self.refs[key] = [0, nbytes]
                self.current += nbytes
                self.peak = max(self.peak, self.current)
                self.largest = max(self.largest, nbytes)
            self.refs[key][0] += 1
            wid, self.next_id = self.next_id, self.next_id + 1
            self.watchers[wid] = weakref.ref(t, lambda _, k=key, w=wid: self._release(k, w))
        return out


def _storages(objs) -> set:
    keys = set()
    for t in tree_leaves(objs):
        if isinstance(t, torch.Tensor):
            keys.add((t.device, t.untyped_storage().data_ptr()))
    return keys


def peak_memory(fn: Callable, *args, **kwargs) -> MemoryStats:
    """Run ``fn(*args, **kwargs)`` and report the tensor memory it allocated.

    Returns ``MemoryStats(result, peak_bytes, largest_bytes)``. The inputs themselves are not
    counted (they existed before the call); the output is (it is alive at the end).

    Example: ``peak_memory(reference_attention, q, k, v).largest_bytes`` is at least
    ``Nq * Nk * 4`` for float32 inputs -- the score matrix -- while for
    :func:`~attention_lib.efficient.flash.flash_attention` it is one tile or one output.
    """
    tracker = _Tracker(_storages((args, kwargs)))
    with tracker:
        result = fn(*args, **kwargs)
    return MemoryStats(result, tracker.peak, tracker.largest)
