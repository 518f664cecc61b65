"""Giving freed heap memory back to the operating system.

A long-running Python worker that decodes many images grows its resident memory far past what it
holds: glibc's malloc keeps freed pages in its arenas. ``malloc_trim(0)`` hands them back (the
arenas' free pages too, not only the top of the heap). Dask's workers get the same effect from
``MALLOC_TRIM_THRESHOLD_``, which also fixes glibc's mmap threshold and so costs speed here; a
periodic trim keeps glibc's dynamic threshold.

A process with many threads (gRPC's, in the Beam job's driver and workers) also grows by glibc's
arenas: up to 8 per core, each keeping its own freed pages. ``limit_arenas`` caps their count in
the job's own process and ``arenas_limited_for_children`` in the worker processes it starts, as
``MALLOC_ARENA_MAX`` does (measured on the job at 101,000 images: the job's peak 1,472 -> 1,135 MB,
the same time). Both are no-ops where the C library is not glibc.
"""

import contextlib
import ctypes
import functools
import os
from typing import Iterator

M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 2  # what the job's processes use, unless MALLOC_ARENA_MAX says otherwise


@functools.lru_cache(maxsize=None)
def _glibc(name: str):
    """A function of the C library this process runs on, or None where it has no such function (not
    glibc). Looked up among the symbols already loaded: ``ctypes.util.find_library`` would start
    ``ldconfig -p`` in every process that trims, the job's workers among them."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; whether anything was released."""
    trim = _glibc("malloc_trim")
    return bool(trim(0)) if trim else False


def arena_cap() -> int:
    """``MALLOC_ARENA_MAX`` if the environment sets it to a positive whole number, else ``ARENAS``
    (glibc itself ignores a value it cannot read, so an empty or misspelt one is no reason to stop)."""
    given = os.environ.get("MALLOC_ARENA_MAX", "").strip()
    return int(given) if given.isdigit() and int(given) > 0 else ARENAS


def limit_arenas() -> int | None:
    """Cap glibc's arenas for this process, for the arenas it makes from now on, at
    ``arena_cap()``. Process-wide and for good: only for a process that is the job (its ``main``),
    never a library call's caller (a trainer in the same process would share the cap). Returns the
    cap, or None where glibc is not there."""
    cap = arena_cap()
    mallopt = _glibc("mallopt")
    return cap if mallopt and mallopt(M_ARENA_MAX, cap) == 1 else None


@contextlib.contextmanager
def arenas_limited_for_children() -> Iterator[str]:
    """Within the block, processes this one starts (the DirectRunner's workers) cap their arenas:
    ``MALLOC_ARENA_MAX``, which glibc reads at a process's start, is set to ``arena_cap()``; the
    environment is as it was after the block (an operator's value, even one glibc cannot read, put
    back as given), so processes started later (a trainer the demo starts after the job) do not
    inherit the cap. Yields the value."""
    given = os.environ.get("MALLOC_ARENA_MAX")
    os.environ["MALLOC_ARENA_MAX"] = str(arena_cap())
    try:
        yield os.environ["MALLOC_ARENA_MAX"]
    finally:
        if given is None:
            del os.environ["MALLOC_ARENA_MAX"]
        else:
            os.environ["MALLOC_ARENA_MAX"] = given
