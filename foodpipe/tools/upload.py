"""``foodpipe upload SRC s3://bucket/prefix``: copy a Food-101-layout folder, or the official
``food-101.tar.gz``, to S3. Parallel, with a progress bar, and resumable: objects already there
with the same size are skipped. Each object is one PUT (or a multipart upload completed at the
end), so an interrupted upload never leaves a partial object behind.
"""

import concurrent.futures
import dataclasses
import os
import tarfile
from collections.abc import Iterator

from tqdm import tqdm

from foodpipe import s3, storage, uri
from foodpipe.errors import FoodpipeError, RunFailed

DEFAULT_WORKERS = 16
# Upload only what the dataset layout needs from an archive or folder.
LAYOUT_DIRS = ("images/", "meta/")


@dataclasses.dataclass(frozen=True)
class UploadItem:
    key_suffix: str  # path relative to the dataset root, e.g. "images/pizza/123.jpg"
    size: int
    read: object  # () -> bytes


def _folder_items(root: str) -> Iterator[UploadItem]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            path = os.path.join(dirpath, filename)
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            if relative.startswith(LAYOUT_DIRS) and not os.path.islink(path):
                yield UploadItem(relative, os.path.getsize(path), lambda path=path: open(path, "rb").read())


def _archive_items(archive: tarfile.TarFile) -> Iterator[UploadItem]:
    """Members of a streamed tarball; ``food-101/images/...`` loses its top folder."""
    for member in archive:
        if not member.isfile():
            continue
        relative = member.name.split("/", 1)[1] if member.name.startswith("food-101/") else member.name
        if relative.startswith(LAYOUT_DIRS) and ".." not in relative.split("/"):
            data = archive.extractfile(member).read()
            yield UploadItem(relative, member.size, lambda data=data: data)


def upload(src: str, dest: str, settings: s3.S3Settings, workers: int = DEFAULT_WORKERS,
           create_bucket: bool = False, show_progress: bool = True) -> dict:
    """Returns ``{"uploaded": n, "skipped": n, "bytes": n}``."""
    if not uri.is_s3(dest):
        raise FoodpipeError(f"upload destination must be s3://bucket/prefix, got {dest!r}")
    bucket = uri.split_s3(dest)[0]
    if not os.path.exists(src):
        raise FoodpipeError(f"upload source does not exist: {src}")
    s3.check_bucket(settings, bucket, f"uploading to {dest}", create=create_bucket)
    try:
        present = storage.list_files(dest, settings)
    except Exception as exc:  # botocore errors of any kind become one line
        raise storage.describe(exc, dest, f"listing {dest}", settings) from None

    stats = {"uploaded": 0, "skipped": 0, "bytes": 0}
    try:
        for items in _items(src):
            _upload_items(items, dest, present, settings, workers, stats, show_progress)
    except FoodpipeError:
        raise
    except (tarfile.TarError, EOFError) as exc:
        raise FoodpipeError(f"cannot read archive {src}: {exc}") from None
    except Exception as exc:  # the work started: what is there is kept, a rerun skips it
        raise RunFailed(str(storage.describe(exc, dest, f"uploading to {dest}", settings))) from None
    if stats["uploaded"] + stats["skipped"] == 0:
        raise FoodpipeError(f"nothing to upload: {src} has no files under images/ or meta/")
    return stats


def _items(src: str):
    """Yields the one stream of ``UploadItem`` of ``src`` (a Food-101 folder or a tar archive),
    kept open while the caller uploads it."""
    if os.path.isdir(src):
        if not os.path.isdir(os.path.join(src, "images")):
            raise FoodpipeError(f"{src} is not in Food-101 layout: it has no images/ folder")
        yield _folder_items(src)
    elif tarfile.is_tarfile(src):
        with tarfile.open(src, mode="r|*") as archive:
            yield _archive_items(archive)
    else:
        raise FoodpipeError(f"upload source is neither a folder nor a tar archive: {src}")


def _upload_items(items: Iterator[UploadItem], dest: str, present: dict, settings: s3.S3Settings, workers: int,
                  stats: dict, show_progress: bool) -> None:
    """Upload ``items`` on ``workers`` threads, skipping those already at ``dest`` with their size."""
    def put(item: UploadItem) -> int:
        body = item.read()
        storage.write(uri.join(dest, item.key_suffix), body, settings)
        return len(body)

    pool = concurrent.futures.ThreadPoolExecutor(workers)
    try:
        with tqdm(desc="upload", unit="obj", disable=not show_progress) as bar:
            pending = set()
            for item in items:
                if present.get(uri.join(dest, item.key_suffix)) == item.size:
                    stats["skipped"] += 1
                    bar.update()
                    continue
                pending.add(pool.submit(put, item))
                if len(pending) >= 4 * workers:  # bounded memory when streaming an archive
                    pending = _drain(pending, stats, bar, wait_all=False)
            _drain(pending, stats, bar, wait_all=True)
    finally:
        # On an error or Ctrl-C, leave at once: waiting would block on a PUT that may never
        # be answered. The objects already written stay; a rerun skips them.
        pool.shutdown(wait=False, cancel_futures=True)


def _drain(pending, stats, bar, wait_all: bool):
    done, not_done = concurrent.futures.wait(
        pending, return_when=concurrent.futures.ALL_COMPLETED if wait_all else concurrent.futures.FIRST_COMPLETED
    )
    for future in done:
        stats["bytes"] += future.result()
        stats["uploaded"] += 1
        bar.update()
    return not_done
