"""Publishing a dataset: the job writes into a private staging folder under the output, and only
a finished job is committed. ``metadata.json`` is removed first and written last, so a reader never
sees an old metadata file over new shards (or the reverse), and no stale shard survives."""

import concurrent.futures
import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import os
import socket
import tempfile
import uuid

from foodpipe import s3, schema, storage, uri
from foodpipe.errors import FoodpipeError

log = logging.getLogger("foodpipe.preprocess")

STAGING_PREFIX = ".staging-"
LOCK_FILE = ".foodpipe-lock"
COMMIT_THREADS = 16  # moves in flight at the commit (S3: server-side copies, each a round trip)


def new_staging_dir(output: str) -> str:
    return uri.join(output, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")


def is_dataset_file(name: str) -> bool:
    return schema.is_shard_name(name) or name in (schema.METADATA_FILE, schema.MANIFEST_FILE, schema.REJECTED_FILE)


def commit(staging: str, output: str, files: list[str], metadata: dict, settings: s3.S3Settings) -> None:
    """Replace whatever dataset is at ``output`` with ``files`` from ``staging`` plus ``metadata``."""
    metadata_path = uri.join(output, schema.METADATA_FILE)
    old = [p for p in sorted(storage.list_files(output, settings, recursive=False))
           if is_dataset_file(p.rsplit("/", 1)[-1])]
    if metadata_path in old:
        storage.delete([metadata_path], settings)  # from here on the output reads as incomplete
        old.remove(metadata_path)
    storage.delete(old, settings)
    with concurrent.futures.ThreadPoolExecutor(COMMIT_THREADS) as pool:  # a server-side copy each on S3
        list(pool.map(lambda name: storage.move(uri.join(staging, name), uri.join(output, name), settings), files))
    storage.write_json(metadata_path, metadata, settings)
    for directory in [staging] + _staging_dirs(output, settings):  # the lock holder owns them all
        storage.delete_tree(directory, settings)


def _staging_dirs(output: str, settings: s3.S3Settings) -> list[str]:
    """Staging folders left under ``output`` by failed runs (their cleanup could not reach the store)."""
    prefix = uri.join(output, STAGING_PREFIX)
    return sorted({path[:path.index("/", len(prefix))] for path in storage.list_files(output, settings)
                   if path.startswith(prefix) and "/" in path[len(prefix):]})


def _create_exclusively(path: str, body: bytes, settings: s3.S3Settings) -> bool:
    try:
        return storage.create_exclusively(path, body, settings)
    except Exception as exc:
        raise storage.describe(exc, path, f"locking {path}", settings) from None


def _read_lock(path: str, settings: s3.S3Settings) -> dict | None:
    try:
        return storage.read_json(path, settings)
    except Exception:  # gone meanwhile, or not ours to parse
        return None


def _is_dead_local_run(holder: dict | None) -> bool:
    if not holder or holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError, KeyError):
        return False
    return False


@contextlib.contextmanager
def _takeover_mutex(path: str):
    """Held by one process of this host at a time, per lock path (the kernel frees it if the holder dies)."""
    name = f"foodpipe-takeover-{hashlib.sha256(path.encode()).hexdigest()[:16]}"
    with open(os.path.join(tempfile.gettempdir(), name), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _take_over(path: str, dead: dict, body: bytes, settings: s3.S3Settings) -> bool:
    """Replace the lock of ``dead`` (a run of this host that died) with ours; False if another run
    took it first. Contenders go one at a time and look again at who holds the lock: without that,
    two runs that both saw the dead lock could each remove it (the second removing the first's new
    lock) and both go on."""
    with _takeover_mutex(path):
        current = _read_lock(path, settings)
        if current is not None and current != dead:
            return False
        if current is not None:
            storage.delete([path], settings)
        return _create_exclusively(path, body, settings)


@contextlib.contextmanager
def exclusive(output: str, settings: s3.S3Settings):
    """One job at a time writes to ``output``: a second one refuses instead of mixing shards.

    A run killed with SIGKILL leaves its lock behind: a run on the same host takes it over (one run
    only, see ``_take_over``); elsewhere the error names the file to delete.
    """
    path = uri.join(output, LOCK_FILE)
    holder = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
    body = json.dumps(holder).encode()
    if not _create_exclusively(path, body, settings):
        other = _read_lock(path, settings)
        # Its owner died on this machine (killed, or S3 went away): take it over.
        if not (_is_dead_local_run(other) and _take_over(path, other, body, settings)):
            who = f"started {other['started']} on {other['host']}, pid {other['pid']}" if other else "unknown run"
            raise FoodpipeError(f"{output} is being written by another preprocess run ({who}); "
                                f"if that run is dead, delete {path} and run again")
    try:
        yield
    finally:
        try:
            storage.delete([path], settings)
        except Exception as exc:  # the store went away: the next run on this host sees the owner is dead
            log.warning("preprocess: could not release the lock %s (%s); a run on this host takes it over, "
                        "elsewhere delete it once no run is writing", path, type(exc).__name__)
