"""Giving freed heap memory back to the OS (glibc's malloc_trim), in a child process of its own."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO

CHILD = """
import json, psutil, sys
from foodpipe import process_memory
held = [bytes(2000) for _ in range(100_000)]  # ~200 MB in glibc's heap (above pymalloc's 512 B)
keep = held[::100]  # a few survivors scattered over the heap: its top cannot simply shrink
del held
before = psutil.Process().memory_info().rss
started = []  # processes started by the trim (finding libc must not run a helper such as ldconfig)
sys.addaudithook(lambda event, _: event in ("subprocess.Popen", "os.fork", "os.posix_spawn", "os.system")
                 and started.append(event))
released = process_memory.release_free_memory()
print(json.dumps({"released": released, "freed_mb": (before - psutil.Process().memory_info().rss) / 2**20,
                  "started": started}))
"""


def test_freed_heap_pages_go_back_to_the_os():
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    found = json.loads(child.stdout)
    assert found["released"] is True and found["freed_mb"] > 100 and found["started"] == [], found


def started_process_sees() -> str:
    """MALLOC_ARENA_MAX as a process started now finds it ('None' if unset)."""
    code = "import os; print(os.environ.get('MALLOC_ARENA_MAX'))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip()


def test_the_job_caps_arenas_in_its_workers_and_leaves_the_callers_environment_as_it_was(monkeypatch):
    """The job's worker processes start with MALLOC_ARENA_MAX (2, or the operator's value); a process
    started after the job (a trainer the demo starts) does not inherit it."""
    from foodpipe import process_memory

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    with process_memory.arenas_limited_for_children() as cap:
        during = started_process_sees()
    assert (cap, during, started_process_sees()) == ("2", "2", "None")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    with process_memory.arenas_limited_for_children() as cap:
        during = started_process_sees()
    assert (cap, during, started_process_sees()) == ("4", "4", "4")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "")  # a value glibc cannot read: the workers get 2, the caller its own
    with process_memory.arenas_limited_for_children() as cap:
        during = started_process_sees()
    assert (cap, during, started_process_sees()) == ("2", "2", "")


def test_the_jobs_own_process_caps_its_arenas():
    """``limit_arenas`` (the job's ``main`` only): 2, or the operator's MALLOC_ARENA_MAX; one glibc cannot
    read (empty, not a number, 0) is ignored as glibc ignores it, not a traceback."""
    found = []
    for given in (None, "4", "", "lots", "0"):
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
        env.update({"MALLOC_ARENA_MAX": given} if given is not None else {})
        code = "from foodpipe import process_memory; print(process_memory.limit_arenas())"
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                               timeout=120)
        assert child.returncode == 0, child.stderr[-2000:]
        found.append(child.stdout.strip())
    assert found == ["2", "4", "2", "2", "2"]
