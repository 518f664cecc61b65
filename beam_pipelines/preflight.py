"""Checks made by the driver before any worker starts, so bad input fails fast with one line:
missing input or bucket, unreachable endpoint, wrong credentials, unknown or empty classes."""

import os

from apache_beam.io.filesystems import FileSystems

from foodpipe import classes as class_lists
from foodpipe import s3, schema, uri
from foodpipe.errors import FoodpipeError


def list_classes(input_uri: str, settings: s3.S3Settings) -> dict[str, int]:
    """``{class: bytes of its files}`` for every class folder under ``INPUT/images/`` holding a file."""
    if uri.is_s3(input_uri):
        return _s3_class_bytes(input_uri, settings)
    images_dir = os.path.join(input_uri, "images")
    if not os.path.isdir(input_uri):
        raise FoodpipeError(f"input folder does not exist: {input_uri}")
    if not os.path.isdir(images_dir):
        raise FoodpipeError(f"input is not in Food-101 layout: {images_dir} does not exist")
    sizes = {}
    for entry in os.scandir(images_dir):
        if entry.is_dir():
            files = [child.stat().st_size for child in os.scandir(entry.path) if child.is_file()]
            if files:
                sizes[entry.name] = sum(files)
    return sizes


def _s3_class_bytes(input_uri: str, settings: s3.S3Settings) -> dict[str, int]:
    s3.check_bucket(settings, uri.split_s3(input_uri)[0], f"reading {input_uri}")
    root = uri.join(input_uri, "images") + "/"
    sizes: dict[str, int] = {}
    try:
        for path, size in s3.list_objects(root, settings).items():
            class_name, _, filename = path[len(root):].partition("/")
            if filename and class_name not in (".", ".."):  # such keys are rejected by the job
                sizes[class_name] = sizes.get(class_name, 0) + size
    except Exception as exc:
        raise s3.describe_error(exc, settings, f"listing {input_uri}") from None
    return sizes


def read_classes_file(path: str) -> list[str]:
    try:
        with FileSystems.open(path) as f:
            return class_lists.parse(f.read().decode("utf-8"))
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
    from beam_pipelines import transforms

    class_bytes = list_classes(config.input, settings)
    classes = select_classes(class_bytes, config.input, config.classes_file)
    input_bytes = sum(class_bytes[name] for name in classes)
    split_bytes = {name: int(input_bytes * fraction) for name, fraction in zip(schema.SPLITS, config.split)}
    return classes, transforms.shard_counts(split_bytes, config.shard_size_bytes)
