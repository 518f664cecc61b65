"""Checks made by the driver before any worker starts, so bad input fails fast with one line:
missing input or bucket, unreachable endpoint, wrong credentials, unknown or empty classes."""

import math

from foodpipe import classes as class_lists
from foodpipe import s3, schema, storage, uri
from foodpipe.errors import FoodpipeError


def list_classes(input_uri: str, settings: s3.S3Settings) -> dict[str, int]:
    """``{class: bytes of its files}`` for every class folder under ``INPUT/images/`` holding a file."""
    storage.check_folder(input_uri, f"reading {input_uri}", settings)
    root = uri.join(input_uri, "images")
    try:
        files = storage.list_files(root, settings)
    except Exception as exc:
        raise storage.describe(exc, input_uri, f"listing {input_uri}", settings) from None
    sizes: dict[str, int] = {}
    for path, size in files.items():
        class_name, _, filename = path[len(root):].lstrip("/").partition("/")
        if filename and class_name not in (".", ".."):  # such paths are rejected by the job
            sizes[class_name] = sizes.get(class_name, 0) + size
    return sizes


def read_classes_file(path: str) -> list[str]:
    try:
        return class_lists.parse(storage.read(path).decode("utf-8"))
    except FoodpipeError:
        raise
    except Exception as exc:
        raise FoodpipeError(f"cannot read classes file {path}: {type(exc).__name__}") from None


def select_classes(available: dict[str, int], input_uri: str, classes_file: str | None) -> list[str]:
    """The classes the job keeps, sorted: labels are indices into this list."""
    if not available:
        raise FoodpipeError(f"no images found under {uri.join(input_uri, 'images')}/<class>/")
    if classes_file is None:
        return sorted(available)
    wanted = read_classes_file(classes_file)
    if not wanted:
        raise FoodpipeError(f"classes file {classes_file} lists no classes")
    missing = [name for name in wanted if name not in available]
    if missing:
        raise FoodpipeError(
            f"classes file {classes_file} names classes with no images under the input: {', '.join(missing)}"
        )
    return sorted(wanted)


def plan(config, settings: s3.S3Settings) -> tuple[list[str], dict[str, int]]:
    """The classes to keep and the shard count of each split, sized from the listed input bytes
    times the split fractions (the Beam job and its single-process peer both start here)."""
    class_bytes = list_classes(config.input, settings)
    classes = select_classes(class_bytes, config.input, config.classes_file)
    input_bytes = sum(class_bytes[name] for name in classes)
    split_bytes = {name: int(input_bytes * fraction) for name, fraction in zip(schema.SPLITS, config.split)}
    return classes, shard_counts(split_bytes, config.shard_size_bytes)


def shard_counts(split_bytes: dict[str, int], shard_size_bytes: int) -> dict[str, int]:
    """Shards per split for the expected bytes of each split (at least one for a non-empty split)."""
    return {name: max(1, math.ceil(size / shard_size_bytes)) for name, size in split_bytes.items() if size > 0}
