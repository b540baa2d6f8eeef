"""Keep freed memory in the process for reuse (glibc malloc), so a CPU training step does not page-fault.

A training step allocates and frees the same multi-megabyte activation maps every iteration. glibc serves blocks
above its mmap threshold (at most 32 MB) with fresh ``mmap`` pages and gives them back on ``free``, so every step
touches — and the kernel zeroes — hundreds of megabytes of new pages. On the VMs measured that made a 39 MB
elementwise op 8-25x slower than into a reused buffer and ghost_yolo's forward+backward ~15 % slower
(benchmarks/bench_batchnorm.py). Telling malloc never to use mmap and never to trim its heap makes freed blocks
reusable; peak memory is unchanged, it is just not returned to the system while the process lives.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc <malloc.h>
_done = False


def keep_freed_memory() -> bool:
    """Ask glibc malloc to keep and reuse freed memory (``M_MMAP_MAX=0``, no heap trimming) for the rest of the
    process, and the dataloader workers forked from it. Returns whether it applied (False off glibc, e.g. macOS,
    Windows or musl). Safe to call more than once."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    log.debug("malloc keeps freed memory: %s", _done)
    return _done
