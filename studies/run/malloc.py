"""Keep glibc from returning freed tensor memory to the system after every step.

A population step allocates and frees tensors of many MB. glibc serves blocks above its mmap
threshold with fresh mmap()s and gives freed heap memory back above its trim threshold, so
every step pays page faults on memory it had a moment ago: on the Fig. 2 grid this cost more
system time than the arithmetic's user time. Fixed thresholds (mmap: 32 MB, glibc's largest;
trim: 2 GB; top pad: 256 MB) keep that memory in the process. Elsewhere (not glibc) nothing
happens.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
_done = False


def keep_freed_memory() -> bool:
    """Set the thresholds once per process; True when glibc took them."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, 32 * 2 ** 20), (M_TRIM_THRESHOLD, 2 ** 31 - 1), (M_TOP_PAD, 256 * 2 ** 20)))
    _done = ok
    return ok
