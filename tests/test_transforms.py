import collections
import hashlib
import json
import os

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines import placement, preflight, single_process, split, transforms
from foodpipe import images, schema, storage
from foodpipe.s3 import S3Settings
from tests.test_images import jpeg


def shared(tmp_path, classes=("pizza", "ramen")):
    return transforms.ShardSettings(str(tmp_path / "out"), str(tmp_path / "parts"), tuple(classes),
                                    str(tmp_path / "images"), images.StorePolicy(), S3Settings())


def write_images(tmp_path, files: dict) -> list[str]:
    for name, data in files.items():
        path = tmp_path / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return sorted(str(path) for path in (tmp_path / "images").glob("*/*"))


def placed_splits(placed: placement.Placement) -> dict[str, str]:
    return {image_id: task.split for task in placed.tasks for image_id, _, _ in task.images}


def pipeline():
    return test_pipeline.TestPipeline(runner="DirectRunner")


def test_locate_reads_class_and_id_from_the_layout():
    assert preflight.locate("s3://b/raw/images/pizza/123.jpg", "s3://b/raw/images") == ("pizza", "pizza/123")
    assert preflight.locate("/d/images/pizza/a.b.jpg", "/d/images") == ("pizza", "pizza/a.b")
    assert preflight.locate("/d/images/loose.jpg", "/d/images") is None
    assert preflight.locate("/d/images/a/b/c.jpg", "/d/images") is None


def test_placement_is_stratified_per_class():
    ids = [f"{c}/{i}" for c in ("pizza", "ramen") for i in range(20)]
    expected = {}
    for c in ("pizza", "ramen"):
        expected.update(split.assign([i for i in ids if i.startswith(c)], (0.75, 0.2, 0.05), seed=4))
    paths = [f"/x/images/{i}.jpg" for i in ids]
    placed = placement.place(paths, "/x/images", ["pizza", "ramen"], split.SplitPlan(fractions=(0.75, 0.2, 0.05), seed=4),
                             {"train": 2, "val": 1, "test": 1}, seed=4)
    assert placed_splits(placed) == expected


def test_placement_keeps_listed_images_and_places_whole_groups():
    """Images a list placed stay there; the others are placed by group, groups across classes in a
    stratum of their own."""
    ids = [f"pizza/listed{i}" for i in range(3)] + [f"{c}/{g}_{i}" for c in ("pizza", "ramen") for g in "abcdef"
                                                     for i in range(3)] + [f"{c}/x{i}" for c in ("pizza", "ramen")
                                                                           for i in range(2)]
    listed = {image_id: ("test" if "listed" in image_id else None) for image_id in ids}
    groups = {image_id: (image_id.split("_")[0] if "_" in image_id else "x") for image_id in ids if "listed" not in image_id}
    plan = split.SplitPlan(fractions=(0.5, 0.5, 0.0), seed=1, listed=listed, groups=groups, mixed=frozenset({"x"}))
    placed = placement.place([f"/x/images/{i}.jpg" for i in ids], "/x/images", ["pizza", "ramen"], plan,
                             {"train": 1, "val": 1, "test": 1}, seed=1)
    rows = [(image_id, group, task.split) for task in placed.tasks for image_id, _, group in task.images]
    check_placed(rows, plan)


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


def test_placement_decides_what_a_path_tells_and_plans_every_shard():
    """Bad paths are rejected and unlisted images skipped by the driver, unread; every planned shard
    is a task (empty ones too), each image in one, in the seeded write order; a split the plan gave
    no bytes (its images all empty files) still gets its shard."""
    paths = ["/x/images/pizza/1.jpg", "/x/images/pizza/2.jpg", "/x/images/loose.jpg", "/x/images/a/b/c.jpg",
             "/x/images/pizza/../3.jpg", "/x/images/sushi/4.jpg", "/x/images/ramen/5.jpg", "/x/images/ramen/6.jpg"]
    plan = split.SplitPlan(source="file", listed={"pizza/1": "train", "pizza/2": "train", "ramen/5": "val"},
                           unlisted="skip")
    placed = placement.place(paths, "/x/images", ["pizza", "ramen"], plan, {"train": 4}, seed=0)
    assert sorted((os.path.basename(r.uri), r.reason) for r in placed.rejections) == [
        ("3.jpg", "path has a '.' or '..' segment"), ("c.jpg", "not at images/<class>/<file>"),
        ("loose.jpg", "not at images/<class>/<file>")]
    assert placed.skipped == 1  # ramen/6; sushi is a class the job leaves out
    assert [task.name for task in placed.tasks] == [f"train-0000{i}-of-00004.tfrecord" for i in range(4)] + [
        "val-00000-of-00001.tfrecord"]
    assert placed_splits(placed) == {"pizza/1": "train", "pizza/2": "train", "ramen/5": "val"}
    for task in placed.tasks:
        assert list(task.images) == sorted(task.images, key=lambda entry: placement.write_order(0, entry))


def test_a_shard_sums_only_train_pixels(tmp_path):
    paths = write_images(tmp_path, {"pizza/1.jpg": jpeg(seed=1), "pizza/2.jpg": jpeg(seed=2)})
    entries = tuple((f"pizza/{i}", path, None) for i, path in zip((1, 2), paths))
    facts = {name: transforms.write_shard(placement.ShardTask(name, 0, 1, entries), shared(tmp_path))
             for name in ("train", "val")}
    expected = sum((images.inspect(jpeg(seed=i)).sums for i in (1, 2)), images.ZERO_SUMS)
    assert images.PixelSums(**facts["train"]["pixel_sums"]) == expected
    assert images.PixelSums(**facts["val"]["pixel_sums"]) == images.ZERO_SUMS
    summary = transforms.summarize(list(facts.values()), [], str(tmp_path / "out"), S3Settings())
    assert images.PixelSums(**{k: tuple(v) if isinstance(v, list) else v for k, v in summary["pixel_sums"].items()}) \
        == expected


def test_a_shard_writer_stores_accepted_images_and_rejects_the_rest(tmp_path):
    paths = write_images(tmp_path, {"pizza/1.jpg": jpeg(), "pizza/2.jpg": b"", "ramen/3.jpg": jpeg(mode="L")})
    entries = tuple((f"{p.split('/')[-2]}/{os.path.basename(p)[0]}", p, None) for p in paths)
    seen = []
    facts = transforms.write_shard(placement.ShardTask("train", 0, 1, entries), shared(tmp_path), seen.append)
    assert (facts["count"], facts["class_counts"]) == (2, {"pizza": 1, "ramen": 1}) and len(seen) == 3
    assert [(os.path.basename(r["uri"]), r["reason"]) for r in facts["rejections"]] == [("2.jpg", "empty file")]
    stored = {example.features.feature[schema.IMAGE_ID].bytes_list.value[0].decode():
              example.features.feature["image/encoded"].bytes_list.value[0] for example in shard_examples(tmp_path / "out" / "train-00000-of-00001.tfrecord")}
    # The grey JPEG was converted when validated and stored converted; the RGB JPEG as it was.
    assert stored == {"pizza/1": jpeg(), "ramen/3": images.stored_bytes(jpeg(mode="L"))}
    part = transforms.read_manifest_part(facts["manifest_part"], S3Settings())
    assert part.column("id").to_pylist() == [e[0] for e in entries if e[0] != "pizza/2"]


def test_shard_counts_follow_bytes():
    mb = 1024 * 1024
    assert preflight.shard_counts({"train": 130 * mb, "val": 10 * mb, "test": 0}, 64 * mb) == {"train": 3, "val": 1}


def test_the_job_writes_every_planned_shard_with_all_its_images(tmp_path):
    """Each shard task becomes its file, written where the task landed: 6 images in 8 planned shards,
    so some are written empty; every planned shard exists, every image is in one, and beside each
    shard are its images' manifest rows."""
    import tensorflow as tf

    paths = write_images(tmp_path, {f"pizza/{i}.jpg": jpeg(seed=i) for i in range(6)})
    placed = placement.place(paths, str(tmp_path / "images"), ["pizza"], split.SplitPlan(fractions=(1.0, 0.0, 0.0)),
                             {"train": 8}, seed=0)
    out, facts = tmp_path / "out", tmp_path / "facts.jsonl"
    with pipeline() as p:
        refs = placement.stage_tasks(placed.tasks, str(tmp_path / "tasks"), S3Settings())
        (p | beam.Create(refs) | beam.ParDo(transforms.WriteShardFn(shared(tmp_path, ["pizza"])))
         | beam.Map(json.dumps) | beam.io.WriteToText(str(facts), shard_name_template=""))
    written = sorted((json.loads(line) for line in facts.read_text().splitlines()), key=lambda s: s["name"])
    every_shard = [schema.shard_name("train", i, 8) for i in range(8)]
    assert [shard["name"] for shard in written] == every_shard == sorted(p.name for p in out.glob("*.tfrecord"))
    assert sum(shard["count"] for shard in written) == 6 and any(shard["count"] == 0 for shard in written)
    ids = [tf.io.parse_single_example(r, schema.feature_spec())[schema.IMAGE_ID].numpy().decode()
           for r in tf.data.TFRecordDataset(sorted(str(p) for p in out.glob("*.tfrecord")))]
    assert sorted(ids) == [f"pizza/{i}" for i in range(6)]
    parts = [transforms.read_manifest_part(shard["manifest_part"], S3Settings()) for shard in written]
    assert sorted(i for part in parts for i in part.column("id").to_pylist()) == sorted(ids)


def test_each_image_is_read_parsed_and_converted_once(raw_dataset, tmp_path, monkeypatch):
    """The shard writer reads, validates and converts (PNGs, greyscale...) each image once, and
    stores what it read: no image is read, parsed or converted a second time."""
    parsed, conversions, reads = collections.Counter(), collections.Counter(), collections.Counter()
    convert, read = images.stored_bytes, storage.read

    def counting(data, policy=images.DEFAULT_POLICY):
        stored = convert(data, policy)
        parsed[hashlib.sha256(data).hexdigest()] += 1
        if stored is not data:
            conversions[hashlib.sha256(data).hexdigest()] += 1
        return stored

    def counting_reads(location, settings=None):
        if "/images/" in location:
            reads[location] += 1
        return read(location, settings)

    monkeypatch.setattr(images, "stored_bytes", counting)
    monkeypatch.setattr(storage, "read", counting_reads)
    single_process.run(["--input", raw_dataset, "--output", str(tmp_path / "out")])
    assert conversions and set(conversions.values()) == {1}
    assert len(parsed) > len(conversions) and set(parsed.values()) == {1}
    assert len(reads) == 3 * 16 + 3 and set(reads.values()) == {1}


def test_a_rejected_image_moves_no_other_image(tmp_path):
    """The split is decided from the listing: an image validation rejects leaves its place empty,
    and every other image stays in its split and shard."""
    from foodpipe.tools import synth

    raw = tmp_path / "raw"
    synth.generate(synth.SynthConfig(str(raw), classes=2, per_class=20, seed=5))
    before = placement_of(raw, tmp_path / "before")
    broken = sorted((raw / "images").glob("*/*.jpg"))[3]
    broken.write_bytes(b"\0" * broken.stat().st_size)  # the same size: the same shard counts are planned
    after = placement_of(raw, tmp_path / "after")
    assert set(before) - set(after) == {f"{broken.parent.name}/{broken.stem}"}
    assert all(after[image_id] == place for image_id, place in before.items() if image_id in after)


def placement_of(raw, out) -> dict:
    import pyarrow.parquet as pq

    single_process.run(["--input", str(raw), "--output", str(out), "--shard-size-mb", "0.2"])
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    shard_of = {}
    for shard in out.glob("*.tfrecord"):
        for example in shard_examples(shard):
            shard_of[example.features.feature[schema.IMAGE_ID].bytes_list.value[0].decode()] = shard.name
    return {row["id"]: (row["split"], shard_of[row["id"]]) for row in manifest}


def shard_examples(path):
    import tensorflow as tf

    for raw in tf.data.TFRecordDataset(str(path)):
        yield tf.train.Example.FromString(raw.numpy())


def gathered_parts(tmp_path, per_class: int) -> tuple[int, int]:
    """How many elements the job's one gathering step received, for a synth input of 3 classes, and
    the size of the job's graph as the runner gets it (Beam's pipeline proto)."""
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
    transforms.build(p, config, planned, str(tmp_path / f"staging{per_class:03d}"), settings)  # same-length names
    graph_bytes = len(p.to_runner_api().SerializeToString())
    result = p.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_name("dataset_parts_gathered"))["counters"]
    return sum(counter.committed for counter in found), graph_bytes


def test_no_step_gathers_every_image_in_one_place(tmp_path):
    """The job's one gathering step (manifest, rejections, summary) receives the shards' facts and a
    start element, however many images there are: 4x the images, the same count. (It used to
    receive every image's manifest row and class count.) Nor does the graph carry the images'
    paths: the shard tasks enter it as references to their staged lists, so its size does not
    follow the images (with the 36 more paths inside it, Beam's compressed pickle, it grew 968 bytes)."""
    (few, few_bytes), (many, many_bytes) = gathered_parts(tmp_path, 4), gathered_parts(tmp_path, 16)
    assert few == many == 2 + 1  # one shard for each of train and val at the default size; start
    assert abs(many_bytes - few_bytes) < 200, (few_bytes, many_bytes)


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
