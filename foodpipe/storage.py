"""The one place that lists, reads, writes, moves, deletes and checks files, for both kinds of
location foodpipe accepts: a local path or ``s3://bucket/key``. Only TensorFlow's own reads (the
TFRecord shards in tf.data, Keras' SavedModel) go elsewhere, through tensorflow-io.

S3 goes through one cached boto3 client per process and settings (``s3.cached_client``: 5 s connect
timeout, 3 attempts), not Beam's S3 filesystem or tf.io.gfile: Beam's makes a client for every
``open`` and retries a call for about ten minutes when the server is gone, and a whole-object gfile
read on S3 is many times slower than a boto3 GET (both measured, docs/BENCHMARKS.md).

Every function takes ``settings`` (default: from the environment). Failures are the clients' own
exceptions; ``describe`` turns any of them into a one-line ``FoodpipeError``.
"""

import contextlib
import json
import os
import shutil
import tempfile
from typing import BinaryIO, Iterator

from foodpipe import s3, uri
from foodpipe.errors import FoodpipeError

MAX_DELETE_BATCH = 1000  # the most one S3 DeleteObjects request takes
CHUNK_BYTES = 8 * 2**20  # a file written from an open file is copied this much at a time


def _client(settings: s3.S3Settings | None):
    return s3.cached_client(settings or s3.S3Settings.from_env())


def _folder_prefix(location: str) -> tuple[str, str]:
    bucket, key = uri.split_s3(location)
    return bucket, f"{key}/" if key else ""


def read(location: str, settings: s3.S3Settings | None = None) -> bytes:
    """The whole file; ``FileNotFoundError`` if there is none, on S3 too."""
    if uri.is_s3(location):
        bucket, key = uri.split_s3(location)
        client = _client(settings)
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"no such file: {location}") from None
    with open(location, "rb") as f:
        return f.read()


def write(location: str, data: bytes | BinaryIO, settings: s3.S3Settings | None = None) -> None:
    """The whole file, all or nothing: one PUT on S3 (an empty body is fine, unlike a multipart
    upload with no parts); locally as ``writing`` does. ``data`` is bytes, or an open binary file
    read from its current position to its end (copied in chunks, so a large file need not be in
    memory)."""
    if uri.is_s3(location):
        bucket, key = uri.split_s3(location)
        _client(settings).put_object(Bucket=bucket, Key=key, Body=data)
        return
    with writing(location, settings) as f:
        if isinstance(data, (bytes, bytearray, memoryview)):
            f.write(data)
        else:
            shutil.copyfileobj(data, f, CHUNK_BYTES)


@contextlib.contextmanager
def writing(location: str, settings: s3.S3Settings | None = None) -> Iterator[BinaryIO]:
    """A binary file to write ``location`` through, all or nothing, for a file made piece by piece:
    locally a temporary file in the destination folder (parent folders made), renamed into place
    when the block ends without an error, so the bytes are written once; on S3 a local temporary
    file, sent in one PUT then. On an error nothing is left, and the old file (if any) stays."""
    if uri.is_s3(location):
        with tempfile.TemporaryFile(prefix="foodpipe-upload-") as staged:
            yield staged
            staged.seek(0)
            write(location, staged, settings)
        return
    folder = os.path.dirname(os.path.abspath(location))
    os.makedirs(folder, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(dir=folder, prefix=".partial-")
    try:
        with os.fdopen(descriptor, "wb") as f:
            yield f
        os.chmod(partial, 0o644)
        os.replace(partial, location)
    except BaseException:
        os.unlink(partial)
        raise


def create_exclusively(location: str, data: bytes, settings: s3.S3Settings | None = None) -> bool:
    """Create the file only if it does not exist (S3: a conditional PUT); False if it did."""
    if uri.is_s3(location):
        bucket, key = uri.split_s3(location)
        client = _client(settings)
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except client.exceptions.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                return False
            raise
        return True
    os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
    try:
        descriptor = os.open(location, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as f:
        f.write(data)
    return True


def list_files(folder: str, settings: s3.S3Settings | None = None, recursive: bool = True) -> dict[str, int]:
    """``{location: size}`` of the files under ``folder`` (only those directly inside it unless
    ``recursive``); empty when the folder does not exist. Local symbolic links to folders are not
    followed; links to files are listed (their targets are the reader's to judge)."""
    if uri.is_s3(folder):
        bucket, prefix = _folder_prefix(folder)
        extra = {} if recursive else {"Delimiter": "/"}
        found = {}
        for page in _client(settings).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **extra):
            found.update({f"s3://{bucket}/{obj['Key']}": obj["Size"] for obj in page.get("Contents", [])})
        return found
    found: dict[str, int] = {}
    pending = [folder]  # depth first, as os.walk: a folder's files, then each subfolder's in order
    while pending:
        subfolders = _list_local(pending.pop(), found)
        pending += reversed(subfolders) if recursive else []
    return found


def _list_local(directory: str, found: dict[str, int]) -> list[str]:
    """A folder's files into ``found``, sorted, one ``stat`` each (``os.scandir``'s entries cache
    it: at 101,000 files half the time of a stat for the size and one for existence); returns its
    subfolders, sorted."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:  # not there, or not readable (os.walk skips it too)
        return []
    subfolders = []
    for entry in entries:
        if entry.is_dir():  # a link to a folder counts as one, and is not followed
            if not entry.is_symlink():
                subfolders.append(entry.path)
            continue
        try:
            found[entry.path] = entry.stat().st_size
        except OSError:  # a dangling link
            found[entry.path] = 0
    return subfolders


def exists(location: str, settings: s3.S3Settings | None = None) -> bool:
    """Whether the file exists."""
    if not uri.is_s3(location):
        return os.path.isfile(location)
    bucket, key = uri.split_s3(location)
    client = _client(settings)
    try:
        client.head_object(Bucket=bucket, Key=key)
    except client.exceptions.ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def links_outside(location: str, folder: str) -> bool:
    """Whether ``location`` is a local symbolic link to a file outside ``folder`` (S3 has no links)."""
    return not uri.is_s3(location) and os.path.islink(location) and not uri.is_inside(
        os.path.realpath(location), os.path.realpath(folder))


def check_folder(folder: str, what: str, settings: s3.S3Settings | None = None, must_exist: bool = True) -> None:
    """A one-line error unless ``folder`` can be used: on S3 its bucket exists and takes the
    credentials; locally the folder exists, or (not ``must_exist``: a folder to write) is made."""
    if uri.is_s3(folder):
        s3.check_bucket(settings or s3.S3Settings.from_env(), uri.split_s3(folder)[0], what)
    elif not must_exist:
        make_local_folder(folder, "the folder")
    elif not os.path.isdir(folder):
        raise FoodpipeError(f"folder does not exist: {folder}")


def make_local_folder(folder: str, what: str) -> str:
    """``folder`` (local) made if it is not there; a one-line error naming ``what`` it is for if it
    cannot be (a file in the way, no permission, a read-only file system)."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        reason = "a file is there" if os.path.isfile(folder) else exc.strerror or exc
        raise FoodpipeError(f"cannot make {what} at {folder}: {reason}") from None
    return folder


def delete(locations: list[str], settings: s3.S3Settings | None = None) -> None:
    """Delete the files; ones already gone are fine."""
    by_bucket: dict[str, list[str]] = {}
    for location in locations:
        if uri.is_s3(location):
            bucket, key = uri.split_s3(location)
            by_bucket.setdefault(bucket, []).append(key)
        elif os.path.lexists(location):
            os.remove(location)
    for bucket, keys in by_bucket.items():
        for start in range(0, len(keys), MAX_DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start:start + MAX_DELETE_BATCH]]
            answer = _client(settings).delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):  # a batch delete reports per-key failures in a 200 response
                first = answer["Errors"][0]
                raise FoodpipeError(f"S3 refused to delete {len(answer['Errors'])} object(s) in {bucket}, "
                                    f"e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip())


def delete_tree(folder: str, settings: s3.S3Settings | None = None) -> None:
    """Delete the folder and everything under it."""
    if uri.is_s3(folder):
        delete(list(list_files(folder, settings)), settings)
    elif os.path.isdir(folder):
        shutil.rmtree(folder)


def move(source: str, dest: str, settings: s3.S3Settings | None = None) -> None:
    """Move a file within one kind of storage: on S3 a server-side copy (multipart above 5 GB),
    then a delete of the source; locally a rename."""
    if uri.is_s3(source) != uri.is_s3(dest):
        raise FoodpipeError(f"cannot move {source} to {dest}: one is on S3 and the other is not")
    if uri.is_s3(source):
        (source_bucket, source_key), (bucket, key) = uri.split_s3(source), uri.split_s3(dest)
        _client(settings).copy({"Bucket": source_bucket, "Key": source_key}, bucket, key)
        delete([source], settings)
        return
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    os.replace(source, dest)


def copy_tree(source: str, destination: str, settings: s3.S3Settings | None = None) -> list[str]:
    """Copy every file under ``source`` to the same relative path under ``destination`` (either may
    be on S3); returns the files written."""
    written = []
    root = source.rstrip("/") + "/" if uri.is_s3(source) else os.path.join(source, "")
    for location in list_files(source, settings):
        relative = location[len(root):]
        target = uri.join(destination, *relative.split("/" if uri.is_s3(source) else os.sep))
        write(target, read(location, settings), settings)
        written.append(target)
    return written


def read_json(location: str, settings: s3.S3Settings | None = None):
    return json.loads(read(location, settings))


def write_json(location: str, value, settings: s3.S3Settings | None = None) -> None:
    write(location, json.dumps(value, indent=2, sort_keys=True).encode(), settings)


def describe(exc: BaseException, location: str, what: str, settings: s3.S3Settings | None = None) -> FoodpipeError:
    """One line for a failure of any function above while ``what`` (e.g. "reading x")."""
    if isinstance(exc, FoodpipeError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return FoodpipeError(f"{location} does not exist (while {what})")
    if uri.is_s3(location):
        return s3.describe_error(exc, settings or s3.S3Settings.from_env(), what)
    if isinstance(exc, OSError):
        return FoodpipeError(f"cannot access {location} while {what}: {exc.strerror or exc}")
    return FoodpipeError(f"{type(exc).__name__} while {what}: {exc}")
