import collections
import dataclasses
import hashlib
import io
import json
import os

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines import preflight, single_process, split, transforms
from foodpipe import images
from foodpipe.s3 import S3Settings
from foodpipe.tfrecord import crc32c
from tests.test_images import jpeg


def record(image_id, split_name=None, sums=images.ZERO_SUMS):
    class_name = image_id.split("/")[0]
    return transforms.ImageRecord(image_id, f"/x/images/{image_id}.jpg", class_name, 0, 10, 10, 100, 0, sums,
                                  split_name)


def pipeline():
    return test_pipeline.TestPipeline(runner="DirectRunner")


def test_locate_reads_class_and_id_from_the_layout():
    assert preflight.locate("s3://b/raw/images/pizza/123.jpg", "s3://b/raw/images") == ("pizza", "pizza/123")
    assert preflight.locate("/d/images/pizza/a.b.jpg", "/d/images") == ("pizza", "pizza/a.b")
    assert preflight.locate("/d/images/loose.jpg", "/d/images") is None
    assert preflight.locate("/d/images/a/b/c.jpg", "/d/images") is None


def test_assign_splits_is_stratified_per_class():
    ids = [f"{c}/{i}" for c in ("pizza", "ramen") for i in range(20)]
    expected = {}
    for c in ("pizza", "ramen"):
        expected.update(split.assign([i for i in ids if i.startswith(c)], (0.75, 0.2, 0.05), seed=4))
    with pipeline() as p:
        result = (p | beam.Create([record(i) for i in ids])
                  | transforms.AssignSplits(split.SplitPlan(fractions=(0.75, 0.2, 0.05), seed=4))
                  | beam.Map(lambda r: (r.image_id, r.split)))
        assert_that(result, equal_to(sorted(expected.items())))


def test_assign_splits_keeps_listed_records_and_places_whole_groups():
    """Records a list placed pass through; the others are placed by group, groups across classes
    in a stratum of their own."""
    listed = [dataclasses.replace(record(f"pizza/listed{i}"), split="test") for i in range(3)]
    grouped = [dataclasses.replace(record(f"{c}/{g}_{i}"), group=f"{c}/{g}")
               for c in ("pizza", "ramen") for g in "abcdef" for i in range(3)]
    across = [dataclasses.replace(record(f"{c}/x{i}"), group="x") for c in ("pizza", "ramen") for i in range(2)]
    plan = split.SplitPlan(fractions=(0.5, 0.5, 0.0), seed=1, mixed=frozenset({"x"}))
    with pipeline() as p:
        result = (p | beam.Create(listed + grouped + across) | transforms.AssignSplits(plan)
                  | beam.Map(lambda r: (r.image_id, r.group, r.split)))
        assert_that(result, lambda rows: check_placed(rows, plan))


def check_placed(rows, plan):
    placed = {image_id: name for image_id, _, name in rows}
    assert len(placed) == 3 + 36 + 4 and all(placed[f"pizza/listed{i}"] == "test" for i in range(3))
    by_group = {}
    for image_id, group, name in rows:
        if group is not None:
            by_group.setdefault(group, set()).add(name)
    assert all(len(names) == 1 for names in by_group.values()), by_group
    for c in ("pizza", "ramen"):  # 6 groups of 3 per class: 3 groups (9 images) to train, 3 to val
        assert sum(placed[f"{c}/{g}_0"] == "train" for g in "abcdef") == 3


def test_compute_stats_sums_only_the_train_split():
    train = [record("a/1", "train", images.PixelSums(2, (1, 2, 3), (1, 4, 9))),
             record("a/2", "train", images.PixelSums(1, (5, 5, 5), (25, 25, 25)))]
    val = [record("a/3", "val", images.PixelSums(7, (7, 7, 7), (49, 49, 49)))]
    with pipeline() as p:
        result = p | beam.Create(train + val) | transforms.ComputeStats()
        assert_that(result, equal_to([images.PixelSums(3, (6, 7, 8), (26, 29, 34))]))


def test_read_and_validate_accepts_and_rejects(tmp_path):
    for name, data in {"pizza/1.jpg": jpeg(), "pizza/2.jpg": b"", "ramen/3.jpg": jpeg(mode="L"),
                       "sushi/4.jpg": jpeg()}.items():
        path = tmp_path / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    with pipeline() as p:
        paths = sorted(str(path) for path in (tmp_path / "images").glob("*/*"))
        accepted, rejected = p | transforms.ReadAndValidate(paths, str(tmp_path / "images"), ["pizza", "ramen"],
                                                            images.StorePolicy(), S3Settings(), str(tmp_path / "conv"))
        assert_that(accepted | beam.Map(lambda r: (r.image_id, r.label, r.converted_uri is not None)),
                    equal_to([("pizza/1", 0, False), ("ramen/3", 1, True)]), label="accepted")
        assert_that(rejected | beam.Map(lambda r: (os.path.basename(r.uri), r.reason)),
                    equal_to([("2.jpg", "empty file")]), label="rejected")
    # The grey JPEG was converted once, when validated; its shard is written from this copy.
    (copy,) = (tmp_path / "conv").iterdir()
    assert copy.read_bytes() == images.stored_bytes((tmp_path / "images/ramen/3.jpg").read_bytes())


def test_shard_counts_follow_bytes():
    mb = 1024 * 1024
    assert preflight.shard_counts({"train": 130 * mb, "val": 10 * mb, "test": 0}, 64 * mb) == {"train": 3, "val": 1}


def test_write_shards_writes_every_shard_with_all_records(tmp_path):
    """The shards records hashed to are written by ``WriteShards``, each with its manifest part; the
    planned shards no record hashed to (6 records, 8 shards) are written empty when the facts are
    gathered (``write_missing_shards``): every planned shard exists, and every record is in one."""
    import tensorflow as tf

    from foodpipe import schema

    source = tmp_path / "images" / "pizza"
    source.mkdir(parents=True)
    records = []
    for i in range(6):
        data = jpeg(seed=i)
        (source / f"{i}.jpg").write_bytes(data)
        records.append(dataclasses.replace(record(f"pizza/{i}", "train"), uri=str(source / f"{i}.jpg"),
                                           stored_size=len(data), stored_crc32c=crc32c(data)))
    out, facts = tmp_path / "out", tmp_path / "facts.jsonl"
    with pipeline() as p:
        (p | beam.Create(records)
         | transforms.WriteShards(str(out), {"train": 8}, seed=0, settings=S3Settings())
         | beam.Map(json.dumps) | beam.io.WriteToText(str(facts), shard_name_template=""))
    written = [json.loads(line) for line in facts.read_text().splitlines()]
    assert 0 < len(written) <= 6 and all(shard["count"] > 0 for shard in written)
    shards = transforms.write_missing_shards(written, {"train": 8}, str(out), S3Settings())
    every_shard = [schema.shard_name("train", i, 8) for i in range(8)]
    assert [shard["name"] for shard in shards] == every_shard == sorted(p.name for p in out.glob("*.tfrecord"))
    assert sum(shard["count"] for shard in shards) == 6
    ids = [tf.io.parse_single_example(r, schema.feature_spec())[schema.IMAGE_ID].numpy().decode()
           for r in tf.data.TFRecordDataset(sorted(str(p) for p in out.glob("*.tfrecord")))]
    assert sorted(ids) == sorted(r.image_id for r in records)
    # Beside each written shard, its records' rows of the manifest.
    parts = [transforms.read_manifest_part(str(p), S3Settings()) for p in sorted(out.glob("manifest-parts/*"))]
    assert [p.name for p in sorted(out.glob("manifest-parts/*"))] == sorted(f"{s['name']}.parquet" for s in written)
    assert sorted(i for part in parts for i in part.column("id").to_pylist()) == sorted(ids)


def test_each_image_is_parsed_and_converted_once(raw_dataset, tmp_path, monkeypatch):
    """Validation parses every image and converts some (PNGs, greyscale...); writing the shard reuses
    that decision and that copy: no image is parsed, nor converted, a second time."""
    parsed, conversions = collections.Counter(), collections.Counter()
    convert = images.stored_bytes

    def counting(data, policy=images.DEFAULT_POLICY):
        stored = convert(data, policy)
        parsed[hashlib.sha256(data).hexdigest()] += 1
        if stored is not data:
            conversions[hashlib.sha256(data).hexdigest()] += 1
        return stored

    monkeypatch.setattr(images, "stored_bytes", counting)
    single_process.run(["--input", raw_dataset, "--output", str(tmp_path / "out")])
    assert conversions and set(conversions.values()) == {1}
    assert len(parsed) > len(conversions) and set(parsed.values()) == {1}


def test_a_file_changed_after_validation_stops_its_shard(tmp_path):
    """The writer checks each image's bytes against validation's size and CRC32C: a file rewritten
    in between with other bytes of the same size is caught, not stored unchecked."""
    path = tmp_path / "images" / "pizza" / "1.jpg"
    path.parent.mkdir(parents=True)
    data = jpeg(seed=1)
    path.write_bytes(data)
    checked = dataclasses.replace(record("pizza/1", "train"), uri=str(path), stored_size=len(data),
                                  stored_crc32c=crc32c(data))
    transforms.encode_shard([checked], 0, S3Settings(), io.BytesIO())
    path.write_bytes(data[:-2] + bytes([data[-2] ^ 1]) + data[-1:])
    with pytest.raises(RuntimeError, match="1.jpg changed while the job was running"):
        transforms.encode_shard([checked], 0, S3Settings(), io.BytesIO())


def gathered_parts(tmp_path, per_class: int) -> int:
    """How many elements the job's one gathering step received, for a synth input of 3 classes."""
    from apache_beam.metrics.metric import MetricsFilter

    from beam_pipelines import config as job_config
    from foodpipe import s3
    from foodpipe.tools import synth

    raw = str(tmp_path / f"raw{per_class}")
    synth.generate(synth.SynthConfig(raw, classes=3, per_class=per_class, seed=1))
    config = job_config.PreprocessConfig(input=raw, output=str(tmp_path / f"out{per_class}"), split=(0.5, 0.5, 0.0))
    settings = s3.S3Settings()
    planned = preflight.plan(config, settings)
    p = test_pipeline.TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=DirectRunner"]))
    transforms.build(p, config, planned, str(tmp_path / f"staging{per_class}"), settings)
    result = p.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_name("dataset_parts_gathered"))["counters"]
    return sum(counter.committed for counter in found)


def test_no_step_gathers_every_image_in_one_place(tmp_path):
    """The job's one gathering step (manifest, rejections, summary) receives the shards' facts, the
    statistics and a start element, however many images there are: 4x the images, the same count.
    (It used to receive every image's manifest row and class count.)"""
    few, many = gathered_parts(tmp_path, 4), gathered_parts(tmp_path, 16)
    assert few == many == 2 + 1 + 1  # one shard for each of train and val at the default size; stats; start


def test_the_jobs_direct_runner_never_tries_prism(monkeypatch):
    """Beam's own DirectRunner (2.77) hands a batch job to Prism first, which downloads a binary
    (online, the job would then run in Prism's one worker process); the job's DirectRunner, the
    default, goes straight to the FnApiRunner."""
    from apache_beam.runners.portability import prism_runner

    from beam_pipelines import options

    tried = []

    def prism(self, pipeline, pipeline_options):
        tried.append(pipeline)
        raise RuntimeError("no Prism binary here")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", prism)
    job_options = options.pipeline_options(["--direct_running_mode=in_memory", "--direct_num_workers=1"],
                                           S3Settings())
    with beam.Pipeline(options=job_options) as p:
        assert_that(p | beam.Create([1, 2]) | beam.Map(lambda x: x * 2), equal_to([2, 4]))
    assert options.runner_name(job_options) == "DirectRunner" and not tried


def test_paths_enter_the_job_in_batches_of_consecutive_paths():
    """About ``PATH_BATCHES`` elements whatever the input's size (one per path below that), every path
    once, in order: few elements to reshuffle, enough for every worker and partition."""
    for count in (0, 3, 1500, 101_000):
        paths = [f"/in/images/c/{i}.jpg" for i in range(count)]
        batches = transforms.path_batches(paths)
        assert [path for batch in batches for path in batch] == paths
        assert len(batches) == count if count < transforms.PATH_BATCHES else \
            transforms.PATH_BATCHES <= len(batches) < 2 * transforms.PATH_BATCHES
