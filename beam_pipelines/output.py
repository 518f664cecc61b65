"""Publishing a dataset: the job writes into a private staging folder under the output, and only
a finished job is committed. ``metadata.json`` is removed first and written last, so a reader never
sees an old metadata file over new shards (or the reverse), and no stale shard survives."""

import contextlib
import datetime
import json
import os
import socket
import uuid

from apache_beam.io.filesystems import FileSystems

from foodpipe import s3, schema, uri
from foodpipe.errors import FoodpipeError

STAGING_PREFIX = ".staging-"
LOCK_FILE = ".foodpipe-lock"


def new_staging_dir(output: str) -> str:
    return uri.join(output, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")


def _top_level_files(directory: str) -> list[str]:
    """Paths directly inside ``directory`` (S3 globs also match deeper keys; those are dropped)."""
    pattern = uri.join(directory, "*")
    try:
        matched = FileSystems.match([pattern])[0].metadata_list
    except Exception:
        return []  # a directory that does not exist yet
    prefix = directory.rstrip("/") + "/"
    return sorted(m.path for m in matched if "/" not in m.path[len(prefix):])


def is_dataset_file(name: str) -> bool:
    return schema.is_shard_name(name) or name in (schema.METADATA_FILE, schema.MANIFEST_FILE, schema.REJECTED_FILE)


def read_json(path: str) -> dict:
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode())


def write_json(path: str, value: dict) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps(value, indent=2, sort_keys=True).encode())


def delete_tree(directory: str) -> None:
    paths = [directory.rstrip("/") + "/"] if uri.is_s3(directory) else [directory]
    try:
        FileSystems.delete(paths)
    except Exception:
        pass  # already gone


def commit(staging: str, output: str, files: list[str], metadata: dict) -> None:
    """Replace whatever dataset is at ``output`` with ``files`` from ``staging`` plus ``metadata``."""
    metadata_path = uri.join(output, schema.METADATA_FILE)
    old = [p for p in _top_level_files(output) if is_dataset_file(p.rsplit("/", 1)[-1])]
    if metadata_path in old:
        FileSystems.delete([metadata_path])  # from here on the output reads as incomplete
        old.remove(metadata_path)
    if old:
        FileSystems.delete(old)
    FileSystems.rename([uri.join(staging, name) for name in files], [uri.join(output, name) for name in files])
    write_json(metadata_path, metadata)
    delete_tree(staging)


def _create_exclusively(path: str, body: bytes, settings: s3.S3Settings) -> bool:
    """Create ``path`` only if it does not exist (S3: a conditional PUT); False if it did."""
    if uri.is_s3(path):
        bucket, key = uri.split_s3(path)
        client = s3.cached_client(settings)
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        except client.exceptions.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                return False
            raise s3.describe_error(exc, settings, f"locking {path}") from None
        return True
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as f:
        f.write(body)
    return True


def _remove(path: str, settings: s3.S3Settings) -> None:
    if uri.is_s3(path):
        bucket, key = uri.split_s3(path)
        s3.cached_client(settings).delete_object(Bucket=bucket, Key=key)
    elif os.path.exists(path):
        os.remove(path)


def _read_lock(path: str, settings: s3.S3Settings) -> dict | None:
    try:
        if uri.is_s3(path):
            return json.loads(s3.read_object(path, settings))
        with open(path) as f:
            return json.load(f)
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
def exclusive(output: str, settings: s3.S3Settings):
    """One job at a time writes to ``output``: a second one refuses instead of mixing shards.

    A run killed with SIGKILL leaves its lock behind; the error names the file to delete.
    """
    path = uri.join(output, LOCK_FILE)
    holder = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "host": socket.gethostname(), "pid": os.getpid()}
    body = json.dumps(holder).encode()
    if not _create_exclusively(path, body, settings):
        other = _read_lock(path, settings)
        if _is_dead_local_run(other):  # its owner died on this machine (killed, or S3 went away)
            _remove(path, settings)
        if not _create_exclusively(path, body, settings):
            who = f"started {other['started']} on {other['host']}, pid {other['pid']}" if other else "unknown run"
            raise FoodpipeError(f"{output} is being written by another preprocess run ({who}); "
                                f"if that run is dead, delete {path} and run again")
    try:
        yield
    finally:
        try:
            _remove(path, settings)
        except Exception:  # the store went away: the next run on this host sees the owner is dead
            pass
