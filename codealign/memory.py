"""Handing freed memory back to the system between the stages of a long run.

A training stage frees its model, optimiser and activations, but glibc keeps the freed
heap, so the process can stay at many gigabytes while the next stage (a vLLM engine in
a process of its own, the sandbox workers) needs the memory: measured in a SmolLM2 round
on 24 GB, 15.7 GB resident after DPO with 0.6 GB of it live.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)  # glibc only
    return trim


def release_memory() -> bool:
    """Collect garbage and return the heap's free pages to the system (where the C library
    can: glibc's ``malloc_trim``); whether it could."""
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
