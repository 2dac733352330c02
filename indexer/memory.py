"""Giving freed heap memory back to the operating system during long jobs.

Decoding and encoding allocate and free large buffers from several threads; glibc keeps
the freed memory in per-thread arenas, so a job's resident memory creeps up with the
number of images it has processed. Trimming the heap at shard boundaries keeps it flat.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    library = ctypes.CDLL(name)
    return library if hasattr(library, "malloc_trim") else None  # glibc only


def release_free_memory() -> None:
    """malloc_trim(0) where the C library has it (glibc); nothing elsewhere."""
    library = _libc()
    if library is not None:
        library.malloc_trim(0)
