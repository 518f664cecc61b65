"""The job's DoFns and composite PTransforms. Small records (ids, sizes, pixel sums) travel
through the shuffles; image bytes are read where they are used, and a shard is encoded straight
into its file (on S3: into a local temporary file, then sent in one piece), never held in memory
whole.
An image that has to be converted (not an RGB JPEG, or over --max-side) is converted once, when it
is validated: the converted bytes wait in a folder of the staging area until its shard is written."""

import collections
import dataclasses
import hashlib
import io
import json
import os
import socket
import time
from typing import BinaryIO

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines import split
from beam_pipelines.preflight import locate
from beam_pipelines.stats import ChannelStatsFn
from foodpipe import images, process_memory, s3, schema, storage
from foodpipe.tfrecord import TFRecordWriter, crc32c

NAMESPACE = "foodpipe.preprocess"
PROGRESS_REPORT_S = 1.0  # how often a worker's DoFn instance updates its count
TRIM_EVERY = 256  # images a validating DoFn inspects between returns of freed memory to the OS
SUMMARY_FILE = "summary.json"


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One accepted image, without its pixels."""

    image_id: str  # "<class>/<file stem>", as in Food-101's meta files
    uri: str
    class_name: str
    label: int
    height: int
    width: int
    stored_size: int
    stored_crc32c: int  # of the bytes the shard stores: the writer checks them against it, unparsed
    sums: images.PixelSums
    split: str | None = None  # None until the hash places it, where no list did
    converted_uri: str | None = None  # where the converted bytes wait; None: the raw file is stored as it is
    group: str | None = None  # with --group-file or --group-pattern: the group the split keeps together

    def __reduce__(self):
        # Pickled as its values only (Beam's coder pickles it): the runner buffers one record per
        # image between the job's steps, and the field names were a third of each.
        return ImageRecord, tuple(getattr(self, field.name) for field in dataclasses.fields(self))


@dataclasses.dataclass(frozen=True)
class Rejection:
    uri: str
    reason: str


class InspectImageFn(beam.DoFn):
    """Reads and validates one file; yields an ``ImageRecord`` for an accepted image and a
    ``Rejection`` with its reason for the rest. Never raises for bad data. An image that had to be
    converted is written, converted, under ``converted_dir`` (a folder the job removes at its end).
    An image the split lists leave out is rejected or skipped as ``split_plan`` says, unread."""

    def __init__(self, images_root: str, classes: list[str], policy: images.StorePolicy,
                 settings: s3.S3Settings, converted_dir: str, progress_dir: str | None = None,
                 split_plan: split.SplitPlan = split.SplitPlan()):
        self.images_root = images_root
        self.split_plan = split_plan
        self.settings = settings
        self.converted_dir = converted_dir
        self.progress_dir = progress_dir  # local folder where each instance reports its count
        self._inspected, self._reported, self._first = 0, 0.0, None
        self.labels = {name: index for index, name in enumerate(classes)}
        self.policy = policy
        self.read = Metrics.counter(NAMESPACE, "images_read")
        self.rejected = Metrics.counter(NAMESPACE, "images_rejected")
        self.converted = Metrics.counter(NAMESPACE, "images_converted")
        self.unlisted_skipped = Metrics.counter(NAMESPACE, "images_unlisted_skipped")

    def process(self, path: str):
        self._first = self._first or time.time()
        output = self.inspect_file(path)
        self._inspected += 1
        if self._inspected % TRIM_EVERY == 0:
            process_memory.release_free_memory()
        if self.progress_dir and time.monotonic() - self._reported >= PROGRESS_REPORT_S:
            self.report_progress()
        if output is not None:
            yield output

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

    def inspect_file(self, path: str):
        if any(part in (".", "..") for part in path.split("/")):
            self.rejected.inc()
            return Rejection(path, "path has a '.' or '..' segment")
        if storage.links_outside(path, self.images_root):
            self.rejected.inc()
            return Rejection(path, "symbolic link to a file outside the input folder")
        located = locate(path, self.images_root)
        if located is None:
            self.rejected.inc()
            return Rejection(path, "not at images/<class>/<file>")
        class_name, image_id = located
        if class_name not in self.labels:
            return None  # a class the job was asked to leave out
        placed = self.split_plan.place(image_id)
        if placed == split.NOT_LISTED:
            self.rejected.inc()
            return Rejection(path, split.NOT_LISTED)
        if placed == split.SKIP:
            self.unlisted_skipped.inc()
            return None
        self.read.inc()
        data = storage.read(path, self.settings)
        found = images.inspect(data, self.policy)
        if found.reason:
            self.rejected.inc()
            return Rejection(path, found.reason)
        converted_uri = None
        stored = found.converted_data if found.converted else data
        if found.converted:
            self.converted.inc()
            converted_uri = f"{self.converted_dir}/{hashlib.sha256(path.encode()).hexdigest()}.jpg"
            storage.write(converted_uri, found.converted_data, self.settings)
        return ImageRecord(
            image_id=image_id, uri=path, class_name=class_name, label=self.labels[class_name],
            height=found.height, width=found.width, stored_size=found.stored_size,
            stored_crc32c=crc32c(stored), sums=found.sums, converted_uri=converted_uri, split=placed,
            group=self.split_plan.group(image_id),
        )


def only(kind):
    """``FlatMap`` function keeping elements of one type. (Used instead of tagged outputs, which
    Beam's Dask runner does not route.)"""
    return lambda element: [element] if isinstance(element, kind) else []


class ReadAndValidate(beam.PTransform):
    """The listed files of ``ROOT/images/`` -> ``(accepted ImageRecords, Rejections)``.

    The driver lists the input (``preflight.plan``) and the paths enter the pipeline as about
    ``PATH_BATCHES`` elements of consecutive paths (one path each below that many): ``Create``
    spreads them over the workers (the DirectRunner reshuffles them; the Dask runner cuts them in
    partitions), and each worker unbatches its own. One element per path cost the DirectRunner
    2.7 s before the first image at 101,000 images, reshuffling each path through the driver.
    Listing inside the pipeline from one root element would keep every path in that element's
    partition on Dask, where ``Reshuffle`` does nothing: one worker would validate every image.
    """

    def __init__(self, paths: list[str], images_root: str, classes: list[str], policy: images.StorePolicy,
                 settings: s3.S3Settings, converted_dir: str, progress_dir: str | None = None,
                 split_plan: split.SplitPlan = split.SplitPlan()):
        super().__init__()
        self.paths = paths
        self.inspect = InspectImageFn(images_root, classes, policy, settings, converted_dir, progress_dir, split_plan)

    def expand(self, pipeline):
        inspected = (
            pipeline
            | "Paths" >> beam.Create(path_batches(self.paths))
            | "Unbatch" >> beam.FlatMap(list)
            | "Inspect" >> beam.ParDo(self.inspect)
        )
        return (inspected | "Accepted" >> beam.FlatMap(only(ImageRecord)),
                inspected | "Rejected" >> beam.FlatMap(only(Rejection)))


PATH_BATCHES = 1024  # elements the paths enter the job as: enough to balance any cluster's partitions


def path_batches(paths: list[str]) -> list[tuple[str, ...]]:
    """``paths`` cut into about ``PATH_BATCHES`` tuples of consecutive paths, in order."""
    size = max(1, len(paths) // PATH_BATCHES)
    return [tuple(paths[start:start + size]) for start in range(0, len(paths), size)]


def assign_stratum(stratum_and_records, split_plan: split.SplitPlan):
    """One stratum's records (a class, or the groups across classes), placed: the ones a list
    placed as they are, the others by the hash, among themselves."""
    _, records = stratum_and_records
    records = list(records)
    splits = split_plan.assign([(r.image_id, r.group) for r in records if r.split is None])
    for record in records:
        yield record if record.split is not None else dataclasses.replace(record, split=splits[record.image_id])


def stratum_key(record: ImageRecord, split_plan: split.SplitPlan):
    return split_plan.stratum(record.class_name, record.group), record


class AssignSplits(beam.PTransform):
    """Stratified, deterministic split: records are grouped by stratum (ids only, no pixels) and
    the ones no list placed are placed by the hash (``split.SplitPlan``). The ones a list placed go
    through the same group: one path through the graph, so the runner need not materialize a
    ``Flatten`` of two (at 101,000 images that cost as much as the grouping)."""

    def __init__(self, split_plan: split.SplitPlan):
        super().__init__()
        self.split_plan = split_plan

    def expand(self, records):
        return (
            records
            | "KeyByStratum" >> beam.Map(stratum_key, self.split_plan)
            | "GroupByStratum" >> beam.GroupByKey()
            | "Assign" >> beam.FlatMap(assign_stratum, self.split_plan)
        )


class ComputeStats(beam.PTransform):
    """Global per-channel pixel sums over the train split (no element when it is empty).

    A ``CombinePerKey`` on one key rather than ``CombineGlobally``: the latter's default for an
    empty input is a side input, which Beam's Dask runner computes anew, with every step upstream,
    each time it is read.
    """

    def expand(self, records):
        return (
            records
            | "TrainOnly" >> beam.Filter(lambda r: r.split == schema.TRAIN)
            | "Sums" >> beam.Map(lambda r: (None, r.sums))
            | "Combine" >> beam.CombinePerKey(ChannelStatsFn())
            | "Total" >> beam.Map(lambda keyed: keyed[1])
        )


def key_by_shard(record: ImageRecord, counts: dict[str, int], seed: int):
    count = counts[record.split]
    index = split.stable_hash(seed, "shard", record.image_id) % count
    return (record.split, index, count), record


def encode_shard(records, seed: int, settings: s3.S3Settings, out: BinaryIO) -> int:
    """Writes one shard's TFRecords to ``out`` and returns their count: records in a seeded random
    order (so classes are mixed), each image's stored bytes read again (the raw file, or its
    converted copy if it had to be converted) and checked against the size and CRC32C validation
    recorded, not parsed again: validation already decided what is stored."""
    ordered = sorted(records, key=lambda r: (split.stable_hash(seed, "order", r.image_id), r.image_id))
    writer = TFRecordWriter(out)
    for record in ordered:
        data = storage.read(record.converted_uri or record.uri, settings)
        if len(data) != record.stored_size or crc32c(data) != record.stored_crc32c:
            raise RuntimeError(f"{record.uri} changed while the job was running")
        writer.write(schema.to_example(data, record.image_id, record.label, record.class_name, record.height,
                                       record.width))
    return writer.records


def write_shard(location: str, records, seed: int, settings: s3.S3Settings) -> dict:
    """Encodes a shard straight into its file (``storage.writing``: in place on a local output, a
    local temporary file sent in one piece to S3); the worker's memory holds one image at a time,
    not the shard. Returns its record count and size."""
    with storage.writing(location, settings) as encoded:
        written = encode_shard(records, seed, settings, encoded)
        size = encoded.tell()
    return {"count": written, "bytes": size}


class WriteShardFn(beam.DoFn):
    """Writes one shard (see ``encode_shard``) in one piece, and its records' part of the manifest
    beside it (``MANIFEST_PARTS/<shard>.parquet``), so that no step gathers every image's row.
    Yields the shard's facts: its name, record count, bytes, manifest part and class counts."""

    def __init__(self, directory: str, seed: int, settings: s3.S3Settings):
        self.directory, self.seed, self.settings = directory, seed, settings
        self.written = Metrics.counter(NAMESPACE, "images_written")

    def process(self, shard_and_records):
        (split_name, index, count), records = shard_and_records
        records = list(records)
        name = schema.shard_name(split_name, index, count)
        shard = write_shard(f"{self.directory}/{name}", records, self.seed, self.settings)
        part = f"{self.directory}/{MANIFEST_PARTS}/{name}.parquet"
        storage.write(part, parquet_bytes(manifest_table([manifest_row(r) for r in records])), self.settings)
        self.written.inc(shard["count"])
        process_memory.release_free_memory()
        class_counts = collections.Counter(r.class_name for r in records)
        yield shard_facts(split_name, name, shard, dict(class_counts), manifest_part=part)


def shard_facts(split_name: str, name: str, written: dict, class_counts: dict, **more) -> dict:
    """What the gathering step learns of one written shard (``write_shard``'s count and bytes),
    and which process wrote it."""
    return {"split": split_name, "name": name, **written, **more, "class_counts": class_counts,
            "writer": f"{socket.gethostname()}:{os.getpid()}"}


class WriteShards(beam.PTransform):
    """Split records -> ``{split}-NNNNN-of-MMMMM.tfrecord``, ``counts[split]`` shards per split,
    each written by the worker that got its group; yields each written shard's facts. A shard no
    record hashed to is not written here: ``write_missing_shards`` writes it when the facts are
    gathered (like Beam's own file sinks, which make up their minimum shard count at finalization),
    so that the records need no ``Flatten`` with one empty entry per shard.

    The counts come from the driver (input bytes x split fractions), not from a side input: Beam's
    Dask runner feeds side inputs duplicated elements, and a constant is simpler on every runner.
    """

    def __init__(self, directory: str, counts: dict[str, int], seed: int, settings: s3.S3Settings):
        super().__init__()
        self.directory, self.counts, self.seed, self.settings = directory, counts, seed, settings

    def expand(self, records):
        return (
            records
            | "KeyByShard" >> beam.Map(key_by_shard, self.counts, self.seed)
            | "GroupByShard" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(WriteShardFn(self.directory, self.seed, self.settings))
        )


def write_missing_shards(shards: list[dict], counts: dict[str, int], directory: str,
                         settings: s3.S3Settings) -> list[dict]:
    """Writes, empty, every planned shard no record hashed to; returns the facts of all shards."""
    written, shards = {shard["name"] for shard in shards}, list(shards)
    for split_name, count in sorted(counts.items()):
        for index in range(count):
            name = schema.shard_name(split_name, index, count)
            if name not in written:
                shards.append(shard_facts(split_name, name, write_shard(f"{directory}/{name}", [], 0, settings), {}))
    return sorted(shards, key=lambda s: s["name"])


def manifest_row(record: ImageRecord) -> dict:
    return {
        "id": record.image_id, "uri": record.uri, "label": record.label, "class_name": record.class_name,
        "split": record.split, "height": record.height, "width": record.width, "group": record.group,
    }


MANIFEST_PARTS = "manifest-parts"  # under the staging folder: one part per shard, merged at the end


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


def write_dataset_files(group, directory: str, counts: dict[str, int], settings: s3.S3Settings) -> str:
    """The shards no record hashed to (empty), the manifest (merged from the shards' parts),
    rejections and ``summary.json`` (the facts the driver turns into ``metadata.json``) from the
    tagged parts ``WriteDatasetFiles`` gathered; returns the summary's path."""
    parts: dict[str, list] = collections.defaultdict(list)
    for tag, value in group[1]:
        parts[tag].append(value)
    Metrics.counter(NAMESPACE, "dataset_parts_gathered").inc(sum(map(len, parts.values())))
    shards = write_missing_shards(parts["shard"], counts, directory, settings)
    manifest = write_manifest([read_manifest_part(s.pop("manifest_part"), settings) for s in shards
                               if "manifest_part" in s],
                              f"{directory}/{schema.MANIFEST_FILE}", settings)
    rejected = write_rejected(parts["rejection"], f"{directory}/{schema.REJECTED_FILE}", settings)
    summary = {
        "shards": [{key: value for key, value in s.items() if key != "class_counts"} for s in shards],
        "pixel_sums": dataclasses.asdict(sum(parts["stats"], images.ZERO_SUMS)),
        "class_counts": class_counts(shards),
        "rejected": rejected,
        "manifest": manifest,
    }
    path = f"{directory}/{SUMMARY_FILE}"
    storage.write(path, json.dumps(summary).encode(), settings)
    return path


class WriteDatasetFiles(beam.PTransform):
    """Empty shards, manifest, rejections and the job summary, next to the shards, written by one
    step that gets the small results as one group: each part tagged, flattened, grouped under one
    key. What it gathers grows with the shards and the rejected files, not with the images: each
    shard writer wrote its records' manifest rows and counted their classes.

    No side inputs and no ``CombineGlobally``: Beam's Dask runner computes a side input anew, with
    every step upstream, each time it is read; with the five side inputs this step had, every image
    was validated five times over on Dask. A start element makes the group exist for an empty input.
    """

    def __init__(self, directory: str, counts: dict[str, int], settings: s3.S3Settings):
        super().__init__()
        self.directory, self.counts, self.settings = directory, counts, settings

    def expand(self, pcolls):
        rejections, shards, stats = (pcolls[k] for k in ("rejected", "shards", "stats"))
        tagged = [
            rejections | "Rejections" >> beam.Map(lambda r: ("rejection", r)),
            shards | "Shards" >> beam.Map(lambda s: ("shard", s)),
            stats | "Stats" >> beam.Map(lambda s: ("stats", s)),
            shards.pipeline | "Start" >> beam.Create([("start", None)]),
        ]
        return (
            tagged
            | "AllParts" >> beam.Flatten()
            | "OneKey" >> beam.Map(lambda part: (None, part))
            | "Gather" >> beam.GroupByKey()
            | "Write" >> beam.Map(write_dataset_files, self.directory, self.counts, self.settings)
        )


CONVERTED_DIR = "converted"  # under the staging folder, which the job removes at its end


def build(pipeline, config, planned, staging: str, settings: s3.S3Settings, progress_dir: str | None = None):
    """The whole job graph for ``planned`` (``preflight.Plan``), writing a complete dataset (plus
    ``summary.json``) under ``staging``; with ``progress_dir`` (a local folder, for runners on this
    machine) the validation step reports its progress there."""
    accepted, rejected = pipeline | "ReadAndValidate" >> ReadAndValidate(
        planned.paths, config.images_root, planned.classes, config.policy, settings, f"{staging}/{CONVERTED_DIR}",
        progress_dir, planned.split_plan)
    records = accepted | "AssignSplits" >> AssignSplits(planned.split_plan)
    stats = records | "ComputeStats" >> ComputeStats()
    shards = records | "WriteShards" >> WriteShards(
        staging, planned.shard_counts, config.seed, settings)
    return {"rejected": rejected, "shards": shards, "stats": stats} | (
        "WriteDatasetFiles" >> WriteDatasetFiles(staging, planned.shard_counts, settings))
