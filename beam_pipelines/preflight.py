"""Checks made by the driver before any worker starts, so bad input fails fast with one line:
missing input or bucket, unreachable endpoint, wrong credentials, unknown or empty classes, split
and group lists that contradict themselves."""

import collections
import dataclasses
import math

from beam_pipelines import placement, split
from beam_pipelines.placement import locate
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


def read_list_file(path: str, what: str, settings: s3.S3Settings | None = None) -> bytes:
    """The bytes of a list the job was given (classes, split or group file), or a one-line error."""
    try:
        return storage.read(path, settings)
    except FileNotFoundError:
        raise FoodpipeError(f"cannot read {what} {path}: no such file") from None
    except Exception as exc:
        if uri.is_s3(path):
            raise storage.describe(exc, path, f"reading {what} {path}", settings) from None
        raise FoodpipeError(f"cannot read {what} {path}: {type(exc).__name__}") from None


def read_classes_file(path: str) -> list[str]:
    try:
        return class_lists.parse(read_list_file(path, "classes file").decode("utf-8"))
    except UnicodeDecodeError:
        raise FoodpipeError(f"cannot read classes file {path}: not UTF-8 text") from None


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
    paths: list[str]  # every listed file, sorted (files of other classes are skipped)
    split_plan: split.SplitPlan = split.SplitPlan()  # where each image goes
    placed: placement.Placement = placement.Placement([], [], 0)  # the job's work: one task per shard


def plan(config, settings: s3.S3Settings) -> Plan:
    """The input files, the classes to keep, where each image goes and the shard count of each
    split, sized from the listed input bytes, and the shard tasks (the Beam job and its
    single-process peer both start here)."""
    files = list_input(config.input, settings)
    classes = select_classes(class_totals(files, config.input), config.input, config.classes_file)
    kept = set(classes)
    sizes: dict[str, int] = collections.Counter()  # image id -> bytes, in the kept classes
    for path, size in files.items():
        located = locate(path, config.images_root)
        if located and located[0] in kept:
            sizes[located[1]] += size
    split_plan = plan_split(config, sizes, kept, settings)
    counts, paths = shard_counts(expected_split_bytes(split_plan, sizes), config.shard_size_bytes), sorted(files)
    placed = placement.place(paths, config.images_root, classes, split_plan, counts, config.seed)
    if split_plan.unlisted == "skip" and split_plan.listed is not None:  # what metadata.json records of it
        split_plan.description["unlisted_skipped"] = placed.skipped
    return Plan(classes, paths, split_plan, placed)


def plan_split(config, sizes: dict[str, int], kept: set[str], settings: s3.S3Settings) -> split.SplitPlan:
    """The split's source read and checked (lists of the kept classes only), with what
    ``metadata.json`` records of it (listed ids that have no image among it: counted, and the first
    ``split.MISSING_NAMES_SHOWN`` named)."""
    described: dict = {"source": config.split_source}
    listed, fractions = read_split_lists(config, settings, described)
    if listed is not None:
        listed = {image_id: name for image_id, name in listed.items() if image_id.split("/", 1)[0] in kept}
        missing = sorted(set(listed) - set(sizes))
        described.update(unlisted=config.unlisted,
                         listed_missing={"count": len(missing), "ids": missing[:split.MISSING_NAMES_SHOWN]})
    groups = read_groups(config, settings, described)
    found = split.SplitPlan(config.split_source, fractions, config.seed, listed, config.unlisted, groups,
                            config.group_pattern, description=described)
    if "groups" in described:
        group_of = {image_id: found.group(image_id) for image_id in sizes}
        described["groups"].update(groups=len(set(group_of.values()) - {None}),
                                   ungrouped=sum(group is None for group in group_of.values()))
        found = dataclasses.replace(found, mixed=split.mixed_groups(sizes, group_of.get))
    return found


def read_split_lists(config, settings: s3.S3Settings, described: dict) -> tuple[dict | None, tuple]:
    """``(listed, fractions)``: ``{id: split}`` from Food-101's lists or a split file (None for a
    fraction split) and the hash's fractions; records the lists' digests in ``described``."""
    if config.split_from == "meta":
        texts = {}
        for name in ("train.txt", "test.txt", "val.txt"):
            path = uri.join(config.input, "meta", name)
            if name == "val.txt" and not storage.exists(path, settings):
                continue
            data = read_list_file(path, "Food-101 split list (--split-from meta)", settings)
            texts[name], described.setdefault("lists", {})[name] = data.decode("utf-8", "replace"), split.sha256(data)
        if "val.txt" in texts:
            return split.parse_meta_lists(texts), config.fractions
        described["val_fraction"] = config.val_fraction
        return split.parse_meta_lists(texts), (1 - config.val_fraction, config.val_fraction, 0.0)
    if config.split_file:
        data = read_list_file(config.split_file, "--split-file", settings)
        described.update(file=config.split_file, sha256=split.sha256(data))
        return split.parse_split_file(data.decode("utf-8", "replace"), config.split_file), config.fractions
    described["fractions"] = list(config.fractions)
    return None, config.fractions


def read_groups(config, settings: s3.S3Settings, described: dict) -> dict[str, str] | None:
    """``{id: group}`` of a group file (None otherwise); records the groups' source in ``described``."""
    if config.group_file:
        data = read_list_file(config.group_file, "--group-file", settings)
        described["groups"] = {"source": "file", "file": config.group_file, "sha256": split.sha256(data)}
        return split.parse_group_file(data.decode("utf-8", "replace"), config.group_file)
    if config.group_pattern:
        described["groups"] = {"source": "pattern", "pattern": config.group_pattern}
    return None


def expected_split_bytes(split_plan: split.SplitPlan, sizes: dict[str, int]) -> dict[str, int]:
    """The bytes each split should get: listed images where they are listed, the others by the
    hash's fractions (as one sum, so that a plain fraction split sizes exactly as before)."""
    by_place: dict = collections.Counter()
    for image_id, size in sizes.items():
        by_place[split_plan.place(image_id)] += size
    return {name: int(by_place[None] * fraction + by_place[name])
            for name, fraction in zip(schema.SPLITS, split_plan.fractions)}


def shard_counts(split_bytes: dict[str, int], shard_size_bytes: int) -> dict[str, int]:
    """Shards per split for the expected bytes of each split (at least one for a non-empty split)."""
    return {name: max(1, math.ceil(size / shard_size_bytes)) for name, size in split_bytes.items() if size > 0}
