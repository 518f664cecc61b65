"""Publishing a dataset: the job writes into a private staging folder under the output, and only
a finished job is committed. ``metadata.json`` is removed first and written last, so a reader never
sees an old metadata file over new shards (or the reverse), and no stale shard survives."""

import json
import uuid

from apache_beam.io.filesystems import FileSystems

from foodpipe import schema, uri

STAGING_PREFIX = ".staging-"


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
