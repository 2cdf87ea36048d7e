"""Keep freed large blocks in the heap (glibc) so big tensors are not page-faulted in on every op.

glibc returns allocations above ``M_MMAP_THRESHOLD`` to the OS when freed, so each new
``[num_nodes, 64]`` activation is mapped fresh and every page faults on first touch. On the VMs
we measured, that made an elementwise op on a 18 MB tensor 4-6x slower than the arithmetic
(``benchmarks/propagate_speed.py`` prints both). Raising the thresholds keeps freed memory for
reuse; peak RSS is unchanged, but it is not returned to the OS until the process exits.
Set ``CPTPP_NO_MALLOPT=1`` to leave the allocator alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory() -> bool:
    """Apply the glibc settings once per process; returns whether they are in effect."""
    global _done
    if _done:
        return True
    if os.environ.get("CPTPP_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 31) == 1
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    _done = ok
    return ok
