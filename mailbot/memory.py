"""Give a large message's memory back to the operating system once it is freed.

glibc's malloc serves blocks above a threshold (128 KiB at first) with their own ``mmap`` and
unmaps them on ``free``. But the first time it frees such a block it raises the threshold to
that block's size (up to 32 MiB), so every later message-sized buffer comes from the heap, and
a heap hole left by a freed message is reused or trimmed only by luck: ``serve`` kept hundreds
of MiB after a burst of 10 MB messages (issue 13). Setting the threshold explicitly turns that
adjustment off (measured with ``bench/memory.py``; the figures are in docs/performance.md).

Other C libraries (musl, macOS) have no such adjustment, or no ``mallopt``: nothing to do there.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("mailbot.memory")

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
# Blocks from 1 MiB up get their own mapping: every message buffer, few ordinary objects.
# serve peaked at 461 -> 310 MiB, kept 290 -> 125 MiB after (bench/memory.py, docs/performance.md)
LARGE_BLOCK_BYTES = 1 << 20


def return_large_blocks_to_the_os() -> bool:
    """Fix glibc's mmap threshold at 1 MiB for this process; False where there is no glibc."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it; musl's mallopt does nothing)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES) != 1:
        log.warning("mallopt(M_MMAP_THRESHOLD) failed: large blocks may stay in the heap")
        return False
    return True
