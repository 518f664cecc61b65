"""Giving freed heap memory back to the operating system.

A long-running Python worker that decodes many images grows its resident memory far past what it
holds: glibc's malloc keeps freed pages in its arenas. ``malloc_trim(0)`` hands them back (the
arenas' free pages too, not only the top of the heap). Dask's workers get the same effect from
``MALLOC_TRIM_THRESHOLD_``, which also fixes glibc's mmap threshold and so costs speed here; a
periodic trim keeps glibc's dynamic threshold.

A process with many threads (gRPC's, in the Beam job's driver and workers) also grows by glibc's
arenas: up to 8 per core, each keeping its own freed pages. ``limit_arenas`` caps their count, as
``MALLOC_ARENA_MAX`` does (measured on the job at 101,000 images: the driver's peak 599 -> 395 MB,
the workers' 852 -> 723 MB, the same time). Both are no-ops where the C library is not glibc.
"""

import ctypes
import ctypes.util
import functools
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 2  # what the job's processes use, unless MALLOC_ARENA_MAX says otherwise


@functools.lru_cache(maxsize=None)
def _glibc(name: str):
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; whether anything was released."""
    trim = _glibc("malloc_trim")
    return bool(trim(0)) if trim else False


def limit_arenas() -> int | None:
    """Cap glibc's arenas for this process (for the arenas it makes from now on) and for the
    processes it starts (``MALLOC_ARENA_MAX``, which glibc reads at their start); a value the
    environment already has is kept. Returns the cap, or None where glibc is not there."""
    cap = int(os.environ.setdefault("MALLOC_ARENA_MAX", str(ARENAS)))
    mallopt = _glibc("mallopt")
    return cap if mallopt and mallopt(M_ARENA_MAX, cap) == 1 else None
