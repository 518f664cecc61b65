"""Local scratch folders that do not outlive their process for long.

A command keeps files on their way somewhere in a scratch folder (a checkpoint's weights on their
way to Keras, plots and the saved model on their way to MLflow, the Beam job's progress counts) and
removes it when done. A process that cannot (SIGKILLed, killed for memory, ended from a watching
thread by ``os._exit`` as the input service's stall watch does) leaves it behind, with whatever
weights it held. So each folder holds a lock its process keeps while it lives (``flock``: the kernel
frees it when the process ends, however it ends), and every ``make`` first removes the folders whose
lock is free: what processes that are gone left.
"""

import fcntl
import glob
import os
import shutil
import tempfile
from typing import IO

OWNER = ".owner"  # the locked file inside each folder
_held: dict[str, IO] = {}  # this process's folders and their open, locked OWNER files


def make(kind: str) -> str:
    """A new folder ``$TMPDIR/foodpipe-KIND-…``, locked by this process; ``remove`` it when done."""
    sweep()
    folder = tempfile.mkdtemp(prefix=f"foodpipe-{kind}-")
    staged = os.path.join(folder, OWNER + ".new")
    lock = open(staged, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    os.rename(staged, os.path.join(folder, OWNER))  # a sweep only looks at OWNER: locked from the start
    _held[folder] = lock
    return folder


def remove(folder: str) -> None:
    """Remove a folder ``make`` made, and let its lock go."""
    shutil.rmtree(folder, ignore_errors=True)
    lock = _held.pop(folder, None)
    if lock is not None:
        lock.close()


def sweep() -> list[str]:
    """Remove the scratch folders of processes that are gone (their lock is free); returns them.
    Folders without a lock file are left alone."""
    removed = []
    for owner in glob.glob(os.path.join(tempfile.gettempdir(), "foodpipe-*", OWNER)):
        folder = os.path.dirname(owner)
        if folder in _held:
            continue
        try:
            with open(owner) as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live process: BlockingIOError
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # alive, or removed by another sweep meanwhile
            continue
        removed.append(folder)
    return removed
