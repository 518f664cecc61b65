"""The job's DoFns and composite PTransforms: one step writes the shards, one gathers their facts.

The driver has decided where every image goes (``placement``: its split, shard and place in the
shard). Each shard is one element: the worker that gets it reads each of its images once,
validates and measures it, converts it where it must (not an RGB JPEG, or over --max-side) and
writes it straight into the shard's file (on S3: a local temporary file sent in one piece); the
image's bytes never cross a shuffle and no step holds every image's record. What travels to the
gathering step is a few small facts per shard: counts, bytes, pixel sums, rejections and where its
part of the manifest was written.
"""

import collections
import dataclasses
import io
import json
import os
import socket
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines import placement
from beam_pipelines.placement import Rejection, ShardTask, TaskRef
from foodpipe import images, process_memory, s3, schema, storage
from foodpipe.tfrecord import TFRecordWriter

NAMESPACE = "foodpipe.preprocess"
PROGRESS_REPORT_S = 1.0  # how often a worker's DoFn instance updates its count
TRIM_EVERY = 256  # images a writing DoFn inspects between returns of freed memory to the OS
SUMMARY_FILE = "summary.json"
MANIFEST_PARTS = "manifest-parts"  # under the staging folder: one part per shard, merged at the end
TASKS = "tasks"  # under the staging folder: each shard task's image list
OUTSIDE_LINK = "symbolic link to a file outside the input folder"


@dataclasses.dataclass(frozen=True)
class ShardSettings:
    """What every shard writer needs besides its task."""

    directory: str  # where the shards go
    parts_directory: str  # where each shard's part of the manifest goes
    classes: tuple[str, ...]
    images_root: str
    policy: images.StorePolicy
    settings: s3.S3Settings


def stored_image(path: str, shared: ShardSettings):
    """``(Inspection, the bytes to store)`` for an image validation accepts, else a ``Rejection``
    with its reason. Never raises for bad data."""
    if storage.links_outside(path, shared.images_root):
        return Rejection(path, OUTSIDE_LINK)
    data = storage.read(path, shared.settings)
    found = images.inspect(data, shared.policy)
    if found.reason:
        return Rejection(path, found.reason)
    return found, found.converted_data if found.converted else data


def write_shard(task: ShardTask, shared: ShardSettings, seen=lambda found: None) -> dict:
    """Writes ``task``'s shard in one piece (``storage.writing``; the worker's memory holds one image
    at a time, not the shard) and its manifest part; returns the shard's facts (``shard_facts``).
    ``seen(found)`` is called for each image, with what ``stored_image`` found."""
    rows, rejections, sums = [], [], images.ZERO_SUMS
    labels = {name: index for index, name in enumerate(shared.classes)}
    with storage.writing(f"{shared.directory}/{task.name}", shared.settings) as out:
        writer = TFRecordWriter(out)
        for image_id, path, group in task.images:
            found = stored_image(path, shared)
            seen(found)
            if isinstance(found, Rejection):
                rejections.append(dataclasses.asdict(found))
                continue
            inspection, data = found
            class_name = image_id.split("/", 1)[0]
            writer.write(schema.to_example(data, image_id, labels[class_name], class_name, inspection.height,
                                           inspection.width))
            rows.append({"id": image_id, "uri": path, "label": labels[class_name], "class_name": class_name,
                         "split": task.split, "height": inspection.height, "width": inspection.width, "group": group})
            sums = sums + inspection.sums if task.split == schema.TRAIN else sums
        size = out.tell()
    part = f"{shared.parts_directory}/{task.name}.parquet"
    storage.write(part, parquet_bytes(manifest_table(rows)), shared.settings)
    return shard_facts(task.split, task.name, {"count": writer.records, "bytes": size},
                       dict(collections.Counter(row["class_name"] for row in rows)), manifest_part=part,
                       pixel_sums=dataclasses.asdict(sums), rejections=rejections)


class WriteShardFn(beam.DoFn):
    """Writes one shard (``write_shard``) and yields its facts; counts, and reports to the driver's
    progress lines, every image it validates."""

    def __init__(self, shared: ShardSettings, progress_dir: str | None = None):
        self.shared = shared
        self.progress_dir = progress_dir  # local folder where each instance reports its count
        self._inspected, self._reported, self._first = 0, 0.0, None
        self.read = Metrics.counter(NAMESPACE, "images_read")
        self.rejected = Metrics.counter(NAMESPACE, "images_rejected")
        self.converted = Metrics.counter(NAMESPACE, "images_converted")
        self.written = Metrics.counter(NAMESPACE, "images_written")

    def process(self, ref: TaskRef):
        self._first = self._first or time.time()
        facts = write_shard(ref.load(self.shared.settings), self.shared, self.seen)
        self.written.inc(facts["count"])
        process_memory.release_free_memory()
        yield facts

    def seen(self, found) -> None:
        if isinstance(found, Rejection):
            self.rejected.inc()
        elif found[0].converted:
            self.converted.inc()
        if not (isinstance(found, Rejection) and found.reason == OUTSIDE_LINK):
            self.read.inc()
        self._inspected += 1
        if self._inspected % TRIM_EVERY == 0:
            process_memory.release_free_memory()
        if self.progress_dir and time.monotonic() - self._reported >= PROGRESS_REPORT_S:
            self.report_progress()

    def finish_bundle(self):
        if self.progress_dir:
            self.report_progress()

    def report_progress(self) -> None:
        """This instance's count of inspected files and the wall-clock times of its first and
        latest, for the driver's progress lines: ``COUNT FIRST LATEST``."""
        if self._first is not None:
            line = f"{self._inspected} {self._first} {time.time()}"
            storage.write(os.path.join(self.progress_dir, f"{os.getpid()}-{id(self)}"), line.encode())
        self._reported = time.monotonic()


def shard_facts(split_name: str, name: str, written: dict, class_counts: dict, **more) -> dict:
    """What the gathering step learns of one written shard (``write_shard``'s count and bytes),
    and which process wrote it."""
    return {"split": split_name, "name": name, **written, **more, "class_counts": class_counts,
            "writer": f"{socket.gethostname()}:{os.getpid()}"}


def manifest_table(rows: list[dict]):
    """Manifest rows as an Arrow table of the manifest's schema (compact columns, not Python objects)."""
    import pyarrow as pa

    columns = pa.schema([(name, getattr(pa, kind)()) for name, kind in schema.MANIFEST_COLUMNS.items()])
    return pa.Table.from_pylist(rows, schema=columns)


def parquet_bytes(table) -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def write_manifest(parts: list, path: str, settings: s3.S3Settings) -> dict:
    """Writes the manifest from its parts (Arrow tables), sorted by id; returns its row count and
    the smallest and largest image side. The same parts in any grouping give the same bytes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.concat_tables([manifest_table([])] + parts).sort_by("id").combine_chunks()
    storage.write(path, parquet_bytes(table), settings)
    sides = [pc.min_max(table[column]).as_py() for column in ("height", "width")]
    return {"rows": table.num_rows, "min_side": min((s["min"] for s in sides if s["min"] is not None), default=0),
            "max_side": max((s["max"] for s in sides if s["max"] is not None), default=0)}


def read_manifest_part(path: str, settings: s3.S3Settings):
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(storage.read(path, settings)))


def reason_kind(reason: str) -> str:
    """A rejection reason without its particulars: ``too small: 20x20, ...`` -> ``too small``."""
    return reason.split(":", 1)[0].split(" (", 1)[0]


def write_rejected(rejections: list[Rejection], path: str, settings: s3.S3Settings) -> dict:
    """Writes the rejections; returns ``{"count": n, "reasons": {kind: n}}``."""
    rows = sorted((dataclasses.asdict(r) for r in rejections), key=lambda row: row["uri"])
    lines = [json.dumps(row, sort_keys=True) + "\n" for row in rows]
    storage.write(path, "".join(lines).encode(), settings)
    kinds = collections.Counter(reason_kind(row["reason"]) for row in rows)
    return {"count": len(lines), "reasons": dict(sorted(kinds.items()))}


def class_counts(shards: list[dict]) -> list[list]:
    """``[split, class, count]`` rows, sorted, from the shards' facts."""
    counts = collections.Counter()
    for shard in shards:
        for class_name, n in shard["class_counts"].items():
            counts[shard["split"], class_name] += n
    return sorted([split_name, class_name, n] for (split_name, class_name), n in counts.items())


def summarize(shards: list[dict], rejections: list[Rejection], directory: str, settings: s3.S3Settings) -> dict:
    """The manifest (merged from the shards' parts) and the rejections (the driver's, from the
    paths, and the shards') written under ``directory``; returns the summary the driver turns into
    ``metadata.json``. The same facts in any order give the same files."""
    shards = sorted((dict(shard) for shard in shards), key=lambda s: s["name"])
    manifest = write_manifest([read_manifest_part(s.pop("manifest_part"), settings) for s in shards],
                              f"{directory}/{schema.MANIFEST_FILE}", settings)
    rejections = list(rejections) + [Rejection(**r) for s in shards for r in s.pop("rejections")]
    rejected = write_rejected(rejections, f"{directory}/{schema.REJECTED_FILE}", settings)
    sums = [images.PixelSums(**s.pop("pixel_sums")) for s in shards]
    return {
        "shards": [{key: value for key, value in s.items() if key != "class_counts"} for s in shards],
        "pixel_sums": dataclasses.asdict(sum(sums, images.ZERO_SUMS)),
        "class_counts": class_counts(shards),
        "rejected": rejected,
        "manifest": manifest,
    }


def write_dataset_files(group, directory: str, rejections: list[Rejection], settings: s3.S3Settings) -> str:
    """The manifest, rejections and ``summary.json`` from the shards' facts ``WriteDatasetFiles``
    gathered (``summarize``); returns the summary's path."""
    shards = [value for tag, value in group[1] if tag == "shard"]
    Metrics.counter(NAMESPACE, "dataset_parts_gathered").inc(len(group[1]))
    path = f"{directory}/{SUMMARY_FILE}"
    storage.write(path, json.dumps(summarize(shards, rejections, directory, settings)).encode(), settings)
    return path


class WriteDatasetFiles(beam.PTransform):
    """Manifest, rejections and the job summary, next to the shards, written by one step that gets
    the shards' facts as one group (flattened with a start element, so that the group exists for
    a job with no shard, and grouped under one key). What it gathers grows with the shards, not
    with the images: each shard writer wrote its records' manifest rows and summed their pixels.

    No side inputs and no ``CombineGlobally``: Beam's Dask runner computes a side input anew, with
    every step upstream, each time it is read.
    """

    def __init__(self, directory: str, rejections: list[Rejection], settings: s3.S3Settings):
        super().__init__()
        self.directory, self.rejections, self.settings = directory, rejections, settings

    def expand(self, shards):
        tagged = [
            shards | "Shards" >> beam.Map(lambda s: ("shard", s)),
            shards.pipeline | "Start" >> beam.Create([("start", None)]),
        ]
        return (
            tagged
            | "AllParts" >> beam.Flatten()
            | "OneKey" >> beam.Map(lambda part: (None, part))
            | "Gather" >> beam.GroupByKey()
            | "Write" >> beam.Map(write_dataset_files, self.directory, self.rejections, self.settings)
        )


def shard_settings(config, planned, staging: str, settings: s3.S3Settings) -> ShardSettings:
    return ShardSettings(staging, f"{staging}/{MANIFEST_PARTS}", tuple(planned.classes), config.images_root,
                         config.policy, settings)


def build(pipeline, config, planned, staging: str, settings: s3.S3Settings, progress_dir: str | None = None):
    """The whole job graph for ``planned`` (``preflight.Plan``), writing a complete dataset (plus
    ``summary.json``) under ``staging``; with ``progress_dir`` (a local folder, for runners on this
    machine) the writers report their progress there.

    The driver stages each shard task's image list as a file (``placement.stage_tasks``) and the
    references enter with ``Create``, which spreads them over the workers (the DirectRunner
    reshuffles them; the Dask runner cuts them in partitions); each is written where it lands.
    With the lists inside the graph (a 7 MB ``Create`` at 101,000 images, which the runner copies)
    the first image came 4.3 s after planning instead of 1.4 s and the job peaked at 878 MB instead
    of 734 (``bench preprocess``, docs/SCALING.md)."""
    refs = placement.stage_tasks(planned.placed.tasks, f"{staging}/{TASKS}", settings)
    shards = (
        pipeline
        | "ShardTasks" >> beam.Create(refs)
        | "WriteShards" >> beam.ParDo(WriteShardFn(shard_settings(config, planned, staging, settings), progress_dir))
    )
    return shards | "WriteDatasetFiles" >> WriteDatasetFiles(staging, planned.placed.rejections, settings)
