"""Giving freed heap memory back to the operating system.

A long-running Python worker that decodes many images grows its resident memory far past what it
holds: glibc's malloc keeps freed pages in its arenas. ``malloc_trim(0)`` hands them back (the
arenas' free pages too, not only the top of the heap). Dask's workers get the same effect from
``MALLOC_TRIM_THRESHOLD_``, which also fixes glibc's mmap threshold and so costs speed here; a
periodic trim keeps glibc's dynamic threshold. A no-op where the C library is not glibc.
"""

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; whether anything was released."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim else False
