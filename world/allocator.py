"""Keep freed tensor memory in the process: glibc malloc settings for big, short-lived tensors.

Every training step (and every frame) allocates and frees the same activation
buffers, a few MB each. glibc serves blocks over its mmap threshold (128 KiB
at start, raised dynamically) with fresh `mmap`s and gives them back with
`munmap`, and trims the heap top after frees, so the kernel zeroes the same
pages again on every step: on this project's 2-core machines ~23% of a
training process's CPU time was system time (docs/RESULTS.md, issue 14). Fixed
thresholds keep those blocks in the heap for reuse. glibc only; elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for the threshold (64-bit): only blocks > 32 MiB are mmapped
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of free heap top instead of trimming it after each step
TOP_PAD = 256 << 20  # grow the heap in 256 MiB steps


def keep_freed_memory() -> bool:
    """Apply the settings above; True if glibc took them all. Safe to call more than once."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(p, v) == 1 for p, v in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                                               (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
