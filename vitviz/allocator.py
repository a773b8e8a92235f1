"""Keep freed memory in the process instead of handing it back to the OS after every training step.

A training step frees tens of MB of activations and gradients. glibc's malloc serves such blocks
with fresh mmaps and returns them on free, so the next step faults every page in again: about
11,000 minor page faults per step of the default model with glibc's defaults, against about 1,000
with these settings (`benchmarks/bench_parts.py`, train_step_page_faults). A batch-1 trace is too
small to matter (under one fault per trace either way).

Nothing calls this on import: the entry points that train (app.py, for the Training studio, and
`python -m vitviz.train`) and the benchmarks call it once, first thing.

The other way round, `give_back_freed_memory` returns what a rare, very large allocation left
behind (decoding a 40-megapixel image takes 160 MB for a moment): glibc keeps freed memory in the
arena of the thread that freed it, and every Streamlit rerun is a new thread, so without it each
arena would keep the peak of the last large image it decoded.
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


def give_back_freed_memory() -> bool:
    """Return the free memory of every malloc arena to the OS (glibc's malloc_trim); False where that is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False
