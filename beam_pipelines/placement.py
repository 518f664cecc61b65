"""Where every listed image goes, decided by the driver from the listing before any worker starts:
its split (``split.SplitPlan``), its shard and its place in the shard. The job's work is then one
``ShardTask`` per shard: a worker reads, validates and writes each of its images once.

What the driver can tell from a path alone is decided here too: a path that is not
``images/<class>/<file>`` or has a ``.``/``..`` segment is rejected, an image of a class the job
leaves out is skipped, and an image no split list names is rejected or skipped as ``--unlisted``
says. The split is taken over the listed images of each class; an image validation rejects later
leaves its place in its split empty (its split is then one image short of the fraction).
"""

import collections
import concurrent.futures
import dataclasses
import json

from beam_pipelines import split
from foodpipe import s3, schema, storage


def locate(path: str, images_root: str) -> tuple[str, str] | None:
    """``(class_name, image_id)`` for ``ROOT/images/<class>/<file>``, else None."""
    relative = path[len(images_root):].lstrip("/") if path.startswith(images_root) else ""
    parts = relative.split("/")
    if len(parts) != 2 or not all(parts):
        return None
    class_name, filename = parts
    return class_name, f"{class_name}/{filename.rsplit('.', 1)[0]}"


@dataclasses.dataclass(frozen=True)
class Rejection:
    uri: str
    reason: str


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """One shard to write: its images as ``(image_id, uri, group)``, in the order they are stored
    (a seeded random order, so classes are mixed)."""

    split: str
    index: int
    count: int
    images: tuple[tuple[str, str, str | None], ...]

    @property
    def name(self) -> str:
        return schema.shard_name(self.split, self.index, self.count)


@dataclasses.dataclass(frozen=True)
class TaskRef:
    """A ``ShardTask`` whose image list waits in a file: what the job's graph carries, so that the
    graph, and what the runner copies of it, does not grow with the images."""

    split: str
    index: int
    count: int
    location: str

    def load(self, settings: s3.S3Settings) -> ShardTask:
        images = tuple(tuple(entry) for entry in json.loads(storage.read(self.location, settings)))
        return ShardTask(self.split, self.index, self.count, images)


STAGE_THREADS = 16  # task files written at once (on S3 each a round trip)


def stage_tasks(tasks: list[ShardTask], folder: str, settings: s3.S3Settings) -> list[TaskRef]:
    """Writes each task's image list to ``folder/<shard>.json``; returns the references, in order."""
    refs = [TaskRef(t.split, t.index, t.count, f"{folder}/{t.name}.json") for t in tasks]
    with concurrent.futures.ThreadPoolExecutor(STAGE_THREADS) as pool:
        list(pool.map(lambda pair: storage.write(pair[1].location, json.dumps(pair[0].images).encode(), settings),
                      zip(tasks, refs)))
    return refs


@dataclasses.dataclass(frozen=True)
class Placement:
    tasks: list[ShardTask]  # every planned shard, empty ones too, by split then index
    rejections: list[Rejection]  # decided from the path alone
    skipped: int  # images left out unread: unlisted with --unlisted skip


def path_rejection(path: str, located: tuple[str, str] | None) -> str | None:
    """Why the job cannot take ``path`` (``located`` is ``locate``'s answer for it), or None."""
    if any(part in (".", "..") for part in path.split("/")):
        return "path has a '.' or '..' segment"
    if located is None:
        return "not at images/<class>/<file>"
    return None


def place(paths: list[str], images_root: str, classes: list[str], split_plan: split.SplitPlan,
          shard_counts: dict[str, int], seed: int) -> Placement:
    """Every path's split and shard: listed ids where a list places them, the others by the hash
    within their stratum (``split.SplitPlan.assign``), then a keyed hash of the id picks the shard."""
    kept, rejections, skipped = set(classes), [], 0
    placed: list[tuple[str, str, str | None, str | None]] = []  # (id, uri, group, split or None)
    for path in paths:
        located = locate(path, images_root)
        reason = path_rejection(path, located)
        if reason:
            rejections.append(Rejection(path, reason))
            continue
        class_name, image_id = located
        if class_name not in kept:
            continue
        where = split_plan.place(image_id)
        if where == split.NOT_LISTED:
            rejections.append(Rejection(path, split.NOT_LISTED))
        elif where == split.SKIP:
            skipped += 1
        else:
            placed.append((image_id, path, split_plan.group(image_id), where))
    hashed = hash_placed(placed, split_plan)
    in_split = [(image_id, path, group, where or hashed[image_id]) for image_id, path, group, where in placed]
    # A split planned no bytes (its images all empty files) still gets its one shard.
    counts = {name: shard_counts.get(name, 1) for name in schema.SPLITS
              if name in shard_counts or any(entry[3] == name for entry in in_split)}
    shards = collections.defaultdict(list)
    for image_id, path, group, name in in_split:
        shards[name, split.stable_hash(seed, "shard", image_id) % counts[name]].append((image_id, path, group))
    tasks = [ShardTask(name, index, count, tuple(sorted(shards[name, index], key=lambda e: write_order(seed, e))))
             for name, count in counts.items() for index in range(count)]
    return Placement(tasks, rejections, skipped)


def hash_placed(placed, split_plan: split.SplitPlan) -> dict[str, str]:
    """``{id: split}`` of the images no list placed, stratum by stratum (a class, or the groups
    across classes)."""
    strata = collections.defaultdict(list)
    for image_id, _, group, where in placed:
        if where is None:
            strata[split_plan.stratum(image_id.split("/", 1)[0], group)].append((image_id, group))
    found: dict[str, str] = {}
    for members in strata.values():
        found.update(split_plan.assign(members))
    return found


def write_order(seed: int, entry: tuple) -> tuple[int, str]:
    return split.stable_hash(seed, "order", entry[0]), entry[0]
