"""Keep freed memory in the process instead of handing it back to the OS after every call.

glibc's malloc returns the top of the heap to the OS once more than 128 KB of it is free, and
serves larger blocks with fresh mmaps. A trace frees about 2 MB when its caller drops it, and a
training step frees tens of MB, so the next call faults every page in again: ~170 page faults
per batch-1 trace and ~4,500 per training step, measured with getrusage. That was most of the
cost of tracing over a plain forward. Raising both thresholds lets the next call reuse the pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit: blocks below it come from the heap
TRIM_THRESHOLD = 128 * 2**20  # free heap kept per arena before any is returned to the OS


def keep_freed_memory() -> bool:
    """Tune glibc's malloc for repeated tensor work; False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # macOS, Windows, musl without mallopt: leave the allocator alone
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
