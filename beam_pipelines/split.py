"""Which split each image goes to: deterministic, stratified, from one of three sources.

- ``fractions`` (the default): within each class, images are ordered by a keyed hash of their id
  (then the id itself); the first ``round(n * f_train)`` go to train, up to
  ``round(n * (f_train + f_val))`` to val, the rest to test.
- ``meta``: Food-101's official lists, ``INPUT/meta/test.txt`` is the test split and
  ``INPUT/meta/train.txt`` is divided into train and val by the same hash, ``--val-fraction`` of
  each class to val (``meta/val.txt``, where the input has one, is the val split as it is).
- ``file``: a CSV ``image_id,split`` that says it for every image.

With groups (``--group-file`` CSV ``image_id,group`` or ``--group-pattern`` REGEX) the hash
assigns whole groups: a group's images all go where its first image's rank falls, so no group is
in two splits and each split's size per class is within one group of its fraction. A group whose
images lie in several classes is assigned in a stratum of its own, with the other such groups.

The result depends only on the ids, the lists, the fractions and the seed: not on the runner, the
number of workers or the order the files were listed in. The driver places the listed images
(``placement``) before any is read, so an image validation rejects moves no other. Ids are ``<class>/<file name without
extension>``, as in the manifest and in Food-101's lists.
"""

import collections
import csv
import dataclasses
import hashlib
import io
import re

from foodpipe.errors import FoodpipeError
from foodpipe.schema import SPLITS, TEST, TRAIN, VAL

UNLISTED_POLICIES = ("reject", "train", "skip")
NOT_LISTED = "not in split lists"  # the rejection reason of an image no list names
SKIP = "skip"  # SplitPlan.place of an image no list names, with --unlisted skip
MIXED_STRATUM = "\x00groups across classes"  # cannot clash with a class folder's name
MISSING_NAMES_SHOWN = 100  # listed ids without an image named in the result; all are counted


def stable_hash(seed: int, purpose: str, key: str) -> int:
    """A 64-bit hash that is the same in every process (unlike ``hash()``)."""
    digest = hashlib.blake2b(f"{seed}\x00{purpose}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise FoodpipeError(f"--split must be three numbers like 0.75,0.2,0.05, got {text!r}") from None
    if len(values) != 3:
        raise FoodpipeError(f"--split needs three fractions (train,val,test), got {len(values)} in {text!r}")
    if any(v < 0 for v in values):
        raise FoodpipeError(f"--split fractions must not be negative, got {text!r}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise FoodpipeError(f"--split fractions must sum to 1, got {text!r} (sum {sum(values):g})")
    return values


def split_boundaries(count: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """Ranks below the first boundary are train, below the second val, the rest test."""
    first = round(count * fractions[0])
    second = round(count * (fractions[0] + fractions[1]))
    return first, max(first, min(second, count))


def assign(ids: list[str], fractions: tuple[float, float, float], seed: int, group_of=None) -> dict[str, str]:
    """``{image_id: split}`` for the ids of one stratum (a class). ``group_of(id)``: the id's group
    (default: each id is its own group, which is the plain stratified split)."""
    members: dict[str, list[str]] = collections.defaultdict(list)
    for image_id in ids:
        members[group_of(image_id) if group_of else image_id].append(image_id)
    first, second = split_boundaries(len(ids), fractions)
    placed, rank = {}, 0
    for group in sorted(members, key=lambda g: (stable_hash(seed, "split", g), g)):
        name = TRAIN if rank < first else VAL if rank < second else TEST
        placed.update(dict.fromkeys(members[group], name))
        rank += len(members[group])
    return placed


def _csv_rows(text: str, source: str, columns: tuple[str, str]) -> list[tuple[int, str, str]]:
    """``(line number, first, second)`` of a two-column CSV with the header ``columns``."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [cell.strip() for cell in rows[0]] != list(columns):
        raise FoodpipeError(f"{source}: the first line must be the header {','.join(columns)}")
    found = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise FoodpipeError(f"{source} line {number}: expected two values {','.join(columns)}, got {','.join(row)!r}")
        found.append((number, row[0].strip(), row[1].strip()))
    return found


def _check_id(image_id: str, source: str, number: int) -> str:
    if image_id.count("/") != 1 or image_id.startswith("/") or image_id.endswith("/"):
        raise FoodpipeError(f"{source} line {number}: {image_id!r} is not an image id "
                            f"(<class>/<file name without extension>, as in Food-101's lists)")
    return image_id


def _by_id(entries, clash: str) -> dict[str, str]:
    """``{id: value}`` from ``(source, line, id, value)`` entries; an id with two values is an error
    (``clash`` says what that means, e.g. "listed in two splits")."""
    found: dict[str, str] = {}
    for source, number, image_id, value in entries:
        earlier = found.setdefault(_check_id(image_id, source, number), value)
        if earlier != value:
            raise FoodpipeError(f"{source} line {number}: {image_id} is {clash} ({earlier} and {value})")
    return found


def parse_split_file(text: str, source: str) -> dict[str, str]:
    """A split file: ``image_id,split`` with split one of train, val, test."""
    entries = _csv_rows(text, source, ("image_id", "split"))
    for number, _, name in entries:
        if name not in SPLITS:
            raise FoodpipeError(f"{source} line {number}: unknown split {name!r} (one of {', '.join(SPLITS)})")
    return _by_id(((source, number, image_id, name) for number, image_id, name in entries), "listed in two splits")


def parse_meta_lists(lists: dict[str, str]) -> dict[str, str | None]:
    """Food-101's ``{"train.txt": text, "test.txt": text[, "val.txt": text]}`` -> ``{id: split}``;
    without a val list, train's ids map to None: the pool the hash divides into train and val."""
    listed = _by_id(((f"meta/{filename}", number, line.strip(), filename.split(".", 1)[0])
                     for filename, text in lists.items()
                     for number, line in enumerate(text.splitlines(), start=1) if line.strip()),
                    "listed in two splits")
    if f"{VAL}.txt" not in lists:
        return {image_id: None if name == TRAIN else name for image_id, name in listed.items()}
    return listed


def parse_group_file(text: str, source: str) -> dict[str, str]:
    entries = _csv_rows(text, source, ("image_id", "group"))
    return _by_id(((source, number, image_id, group) for number, image_id, group in entries), "in two groups")


def compile_group_pattern(pattern: str) -> re.Pattern:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise FoodpipeError(f"--group-pattern {pattern!r} is not a regular expression: {exc}") from None
    if compiled.groups < 1:
        raise FoodpipeError(f"--group-pattern {pattern!r} needs a capture group: the group is what it captures")
    return compiled


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """Everything the job needs to place an image, decided by the driver before any worker starts.

    ``listed``: ``{id: split}`` from the lists (None for an id the hash places), or None when every
    image is hash-placed (``fractions``). ``fractions``: those of the hash. ``groups`` / ``pattern``:
    the group of an id (an id in neither is a group of its own). ``mixed``: the groups whose images
    lie in more than one class."""

    source: str = "fractions"
    fractions: tuple[float, float, float] = (0.75, 0.2, 0.05)
    seed: int = 0
    listed: dict[str, str | None] | None = None
    unlisted: str = "reject"
    groups: dict[str, str] | None = None
    pattern: str | None = None
    mixed: frozenset = frozenset()
    description: dict = dataclasses.field(default_factory=dict)  # what metadata.json records

    def place(self, image_id: str) -> str | None:
        """The id's split, or None for the hash to decide; ``NOT_LISTED`` for an image no list names
        (with ``--unlisted reject``) and ``SKIP`` for one to leave out (``--unlisted skip``)."""
        if self.listed is None:
            return None
        if image_id in self.listed:
            return self.listed[image_id]
        return {"reject": NOT_LISTED, "skip": SKIP, "train": TRAIN}[self.unlisted]

    def group(self, image_id: str) -> str | None:
        if self.groups is not None:
            return self.groups.get(image_id)
        if self.pattern is not None:
            match = re.search(self.pattern, image_id)
            return match.group(1) if match else None
        return None

    def stratum(self, class_name: str, group: str | None) -> str:
        return MIXED_STRATUM if group in self.mixed else class_name

    def assign(self, ids_and_groups: list[tuple[str, str | None]]) -> dict[str, str]:
        """``{id: split}`` for the hash-placed ids of one stratum."""
        group_of = dict(ids_and_groups)
        return assign(list(group_of), self.fractions, self.seed,
                      lambda image_id: group_of[image_id] if group_of[image_id] is not None else image_id)


def mixed_groups(ids, group_of) -> frozenset:
    """The groups among ``ids`` whose images lie in more than one class."""
    classes: dict[str, set] = collections.defaultdict(set)
    for image_id in ids:
        group = group_of(image_id)
        if group is not None:
            classes[group].add(image_id.split("/", 1)[0])
    return frozenset(group for group, found in classes.items() if len(found) > 1)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
