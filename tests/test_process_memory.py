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
