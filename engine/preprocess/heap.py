"""Returning freed heap memory to the operating system after each pipeline run."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Callable


def _glibc_malloc_trim() -> Callable[[], None]:
    """``malloc_trim(0)`` where the C library is glibc; a no-op elsewhere.

    Why: DALI's dynamic executor allocates its output and scratch buffers (tens of MB per
    study) afresh every run; glibc keeps such freed blocks in its heap rather than giving
    them back, and a worker's resident memory climbs run after run. Measured on a 512 x
    512 x 400 study: peak about 1 GB above the start after ten runs without trimming,
    about 450 MB with a trim after each run, for some 30 ms per run.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def release() -> None:
        trim(0)

    return release


release_free_heap = _glibc_malloc_trim()
"""Give the C heap's free memory back to the operating system (call after each run)."""
