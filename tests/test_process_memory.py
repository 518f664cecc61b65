"""Giving freed heap memory back to the OS (glibc's malloc_trim), in a child process of its own."""

import json
import subprocess
import sys

from tests.conftest import REPO

CHILD = """
import json, psutil
from foodpipe import process_memory
held = [bytes(2000) for _ in range(100_000)]  # ~200 MB in glibc's heap (above pymalloc's 512 B)
keep = held[::100]  # a few survivors scattered over the heap: its top cannot simply shrink
del held
before = psutil.Process().memory_info().rss
released = process_memory.release_free_memory()
print(json.dumps({"released": released, "freed_mb": (before - psutil.Process().memory_info().rss) / 2**20}))
"""


def test_freed_heap_pages_go_back_to_the_os():
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    found = json.loads(child.stdout)
    assert found["released"] is True and found["freed_mb"] > 100, found


ARENAS_CHILD = """
import json, subprocess, sys
from foodpipe import process_memory
cap = process_memory.limit_arenas()
started = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('MALLOC_ARENA_MAX'))"],
                         capture_output=True, text=True).stdout.strip()
print(json.dumps({"cap": cap, "started_process_sees": started}))
"""


def test_the_arena_cap_holds_for_the_process_and_those_it_starts(monkeypatch):
    """The job's driver and workers cap glibc's arenas (``limit_arenas``); a process they start (the
    DirectRunner's workers) gets the cap at its own start; an operator's MALLOC_ARENA_MAX is kept."""
    found = []
    for given in (None, "4"):
        if given is None:
            monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
        else:
            monkeypatch.setenv("MALLOC_ARENA_MAX", given)
        child = subprocess.run([sys.executable, "-c", ARENAS_CHILD], capture_output=True, text=True, cwd=REPO,
                               timeout=120)
        assert child.returncode == 0, child.stderr[-2000:]
        found.append(json.loads(child.stdout))
    assert found == [{"cap": 2, "started_process_sees": "2"}, {"cap": 4, "started_process_sees": "4"}]
