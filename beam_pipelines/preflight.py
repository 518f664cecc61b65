"""Checks made by the driver before any worker starts, so bad input fails fast with one line:
missing input or bucket, unreachable endpoint, wrong credentials, unknown or empty classes."""

import dataclasses
import math

from foodpipe import classes as class_lists
from foodpipe import s3, schema, storage, uri
from foodpipe.errors import FoodpipeError


def list_input(input_uri: str, settings: s3.S3Settings) -> dict[str, int]:
    """``{path: size}`` of every file under ``INPUT/images/`` (deeper ones too: the job rejects them
    with a reason). Listed once, by the driver: the job's first step is the list itself."""
    storage.check_folder(input_uri, f"reading {input_uri}", settings)
    try:
        return storage.list_files(uri.join(input_uri, "images"), settings)
    except Exception as exc:
        raise storage.describe(exc, input_uri, f"listing {input_uri}", settings) from None


def class_totals(files: dict[str, int], input_uri: str) -> dict[str, list[int]]:
    """``{class: [files, bytes]}`` for every class folder under ``INPUT/images/`` holding a file."""
    root = uri.join(input_uri, "images")
    found: dict[str, list[int]] = {}
    for path, size in files.items():
        class_name, _, filename = path[len(root):].lstrip("/").partition("/")
        if filename and class_name not in (".", ".."):  # such paths are rejected by the job
            totals = found.setdefault(class_name, [0, 0])
            totals[0] += 1
            totals[1] += size
    return found


def read_classes_file(path: str) -> list[str]:
    try:
        return class_lists.parse(storage.read(path).decode("utf-8"))
    except FoodpipeError:
        raise
    except Exception as exc:
        raise FoodpipeError(f"cannot read classes file {path}: {type(exc).__name__}") from None


def select_classes(available: dict, input_uri: str, classes_file: str | None) -> list[str]:
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


@dataclasses.dataclass(frozen=True)
class Plan:
    classes: list[str]  # the classes to keep, sorted
    shard_counts: dict[str, int]  # shards per split
    paths: list[str]  # every listed file, sorted: the job's input (files of other classes are skipped)


def plan(config, settings: s3.S3Settings) -> Plan:
    """The input files, the classes to keep and the shard count of each split, sized from the
    listed input bytes times the split fractions (the Beam job and its single-process peer both
    start here)."""
    files = list_input(config.input, settings)
    listed = class_totals(files, config.input)
    classes = select_classes(listed, config.input, config.classes_file)
    input_bytes = sum(listed[name][1] for name in classes)
    split_bytes = {name: int(input_bytes * fraction) for name, fraction in zip(schema.SPLITS, config.split)}
    return Plan(classes, shard_counts(split_bytes, config.shard_size_bytes), sorted(files))


def shard_counts(split_bytes: dict[str, int], shard_size_bytes: int) -> dict[str, int]:
    """Shards per split for the expected bytes of each split (at least one for a non-empty split)."""
    return {name: max(1, math.ceil(size / shard_size_bytes)) for name, size in split_bytes.items() if size > 0}
