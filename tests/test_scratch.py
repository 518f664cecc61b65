"""Scratch folders: a process that is gone (SIGKILLed here) leaves its folder, the next one removes it;
a live process's folder is never touched."""

import os
import signal
import subprocess
import sys
import tempfile

from foodpipe import scratch
from tests.conftest import REPO

CHILD = """
import sys
from foodpipe import scratch
print(scratch.make("test"), flush=True)
sys.stdin.readline()  # holds its folder until told to end (without removing it)
"""


def start_child(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "TMPDIR": str(tmp_path)})
    return proc, proc.stdout.readline().strip()


def test_the_folders_of_gone_processes_are_swept_and_no_live_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this test's folders only
    (killed, killed_folder), (alive, alive_folder) = start_child(tmp_path), start_child(tmp_path)
    try:
        with open(os.path.join(killed_folder, "restore.weights.h5"), "wb") as f:
            f.write(bytes(1000))
        killed.kill()
        killed.wait()
        unlocked = tmp_path / "foodpipe-ckpt-older"  # a folder without a lock file (not made by make)
        unlocked.mkdir()

        mine = scratch.make("test")  # sweeps first
        assert not os.path.exists(killed_folder)
        assert os.path.isdir(alive_folder) and os.path.isdir(mine) and unlocked.is_dir()
        assert scratch.sweep() == []  # a live process's folder (another's or this one's) stays

        alive.communicate("end\n")  # it ends without removing its folder: the next sweep does
        assert alive.returncode == 0
        assert scratch.sweep() == [alive_folder] and os.path.isdir(mine)
        scratch.remove(mine)
        assert not os.path.exists(mine) and mine not in scratch._held
    finally:
        for proc in (killed, alive):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
