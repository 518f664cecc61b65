"""The Beam job end to end on local folders (DirectRunner, multi-processing)."""

import io
import json
import os
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from beam_pipelines import preprocess
from foodpipe import schema
from tests.conftest import foodpipe, free_port, read_local_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(raw_dataset, tmp_path_factory):
    """The job run as a user runs it: ``(output, its result file, the process)``."""
    output, result = str(tmp_path_factory.mktemp("dataset")), tmp_path_factory.mktemp("result") / "result.json"
    done = foodpipe("preprocess", "--input", raw_dataset, "--output", output, "--shard-size-mb", "0.2", "--seed", "3",
                    "--json", str(result))
    assert done.returncode == 0, done.stderr[-3000:]
    return output, result, done


@pytest.fixture(scope="module")
def job(run):
    output = run[0]
    with open(os.path.join(output, schema.METADATA_FILE)) as f:
        return output, json.load(f)


def test_the_command_reports_progress_counters_and_its_result_line(run):
    output, result, done = run
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line == json.loads(result.read_text())
    assert line["output"] == output and line["images"] == 48 and line["rejected"] == 3
    assert line["splits"] == {"train": 36, "val": 9, "test": 3} and sum(line["rejected_reasons"].values()) == 3
    said = done.stderr.splitlines()
    assert "preprocess: 51/51 images validated" in "\n".join(said)  # the final progress line: every file
    summary = next(text for text in said if text.startswith("preprocess: read "))
    assert summary.startswith("preprocess: read 51 images, wrote 48") and "(train 36, val 9, test 3)" in summary
    for kind, count in line["rejected_reasons"].items():
        assert f"{kind} {count}" in summary
    noise = ("apitools", "semi_persistent_directory", "Discarding unparseable", "Logging handler created")
    assert not [text for text in said if any(n in text for n in noise)], said


def test_metadata_describes_the_dataset(job):
    output, metadata = job
    _, examples = read_local_dataset(output)  # what the shards hold, counted apart from metadata.json
    for name, info in metadata["splits"].items():
        stored = [e for e in examples if e["split"] == name]
        assert info["count"] == len(stored)
        assert info["class_counts"] == dict(Counter(e[schema.CLASS_TEXT].decode() for e in stored))
    assert metadata["images"] == len(examples)
    assert metadata["schema_version"] == 1
    assert metadata["classes"] == ["french_toast", "fried_rice", "strawberry_shortcake"]  # synth's first three
    assert metadata["rejected"] == 3 and sum(metadata["rejected_reasons"].values()) == 3
    assert metadata["stats"]["computed_on"] == "train"
    assert metadata["image_sides"]["max"] == 512 and 222 <= metadata["image_sides"]["min"] < 512
    # 16 per class at 0.75/0.2/0.05 -> 12/3/1 per class, exactly.
    assert {name: info["count"] for name, info in metadata["splits"].items()} == {"train": 36, "val": 9, "test": 3}
    for name, per_class in zip(schema.SPLITS, (12, 3, 1)):
        assert set(metadata["splits"][name]["class_counts"].values()) == {per_class}
    listed = {s for info in metadata["splits"].values() for s in info["shards"]}
    on_disk = {name for name in os.listdir(output) if name.endswith(".tfrecord")}
    assert listed == on_disk and len(metadata["splits"]["train"]["shards"]) > 1
    assert not [name for name in os.listdir(output) if name.startswith(".staging")]


def test_every_image_is_stored_once_with_its_label(job, raw_dataset):
    output, metadata = job
    _, examples = read_local_dataset(output)
    manifest = pq.read_table(os.path.join(output, schema.MANIFEST_FILE)).to_pylist()
    assert sorted(e[schema.IMAGE_ID].decode() for e in examples) == sorted(row["id"] for row in manifest)
    assert len(manifest) == 48
    rows = {row["id"]: row for row in manifest}
    for example in examples:
        row = rows[example[schema.IMAGE_ID].decode()]
        assert example["split"] == row["split"]
        assert metadata["classes"][example[schema.LABEL]] == example[schema.CLASS_TEXT].decode() == row["class_name"]
        image = Image.open(io.BytesIO(example[schema.ENCODED]))
        assert (image.format, image.mode) == ("JPEG", "RGB")
        assert image.size == (example[schema.WIDTH], example[schema.HEIGHT]) == (row["width"], row["height"])
        source = open(row["uri"], "rb").read()
        original = Image.open(io.BytesIO(source))
        if (original.format, original.mode) == ("JPEG", "RGB"):
            assert example[schema.ENCODED] == source  # kept byte for byte


def test_max_side_stores_downscaled_images_and_their_statistics(raw_dataset, tmp_path):
    output = str(tmp_path / "small")
    metadata = preprocess.run(["--input", raw_dataset, "--output", output, "--max-side", "160",
                               "--jpeg-quality", "90"], progress=False)
    assert metadata["max_side"] == 160 and metadata["config"]["jpeg_quality"] == 90
    assert metadata["image_sides"]["max"] == 160 and metadata["images"] == 48
    _, examples = read_local_dataset(output)
    for example in examples:
        image = Image.open(io.BytesIO(example[schema.ENCODED]))
        assert max(image.size) == 160 and image.size == (example[schema.WIDTH], example[schema.HEIGHT])
    test_stats_match_numpy_over_the_stored_train_images((output, metadata))


def test_stats_match_numpy_over_the_stored_train_images(job):
    output, metadata = job
    _, examples = read_local_dataset(output)
    pixels = np.concatenate([
        np.asarray(Image.open(io.BytesIO(e[schema.ENCODED])).convert("RGB")).reshape(-1, 3)
        for e in examples if e["split"] == "train"
    ]).astype(np.float64)
    np.testing.assert_allclose(metadata["stats"]["mean"], pixels.mean(axis=0), atol=0.01)
    np.testing.assert_allclose(metadata["stats"]["std"], pixels.std(axis=0), atol=0.01)
    assert metadata["stats"]["pixels"] == len(pixels)


def test_bad_files_are_listed_with_reasons(job):
    output, _ = job
    rejected = [json.loads(line) for line in open(os.path.join(output, schema.REJECTED_FILE))]
    reasons = sorted(r["reason"].split(" ")[0] for r in rejected)
    assert reasons == ["empty", "not", "undecodable"]
    assert all(os.path.exists(r["uri"]) for r in rejected)


def test_records_are_shuffled_across_classes(job):
    output, _ = job
    _, examples = read_local_dataset(output)
    labels = [e[schema.LABEL] for e in examples if e["split"] == "train"]
    changes = sum(a != b for a, b in zip(labels, labels[1:]))
    assert changes > 3 * 2  # grouped by class would give exactly 2 changes


def test_same_dataset_with_one_worker(job, raw_dataset, tmp_path):
    output, _ = job
    preprocess.run(["--input", raw_dataset, "--output", str(tmp_path), "--shard-size-mb", "0.2", "--seed", "3",
                    "--direct_num_workers=1"])
    for name in os.listdir(output):
        if name.endswith(".tfrecord") or name in (schema.REJECTED_FILE, schema.MANIFEST_FILE):
            assert open(os.path.join(output, name), "rb").read() == open(tmp_path / name, "rb").read(), name


def test_rerun_replaces_the_dataset_cleanly(raw_dataset, tmp_path):
    out = str(tmp_path / "ds")
    first = preprocess.run(["--input", raw_dataset, "--output", out, "--shard-size-mb", "0.1"])
    second = preprocess.run(["--input", raw_dataset, "--output", out, "--shard-size-mb", "5", "--seed", "9"])
    assert len(first["splits"]["train"]["shards"]) > len(second["splits"]["train"]["shards"]) == 1
    metadata, examples = read_local_dataset(out)
    assert metadata == second
    listed = {s for info in second["splits"].values() for s in info["shards"]}
    assert {n for n in os.listdir(out) if n.endswith(".tfrecord")} == listed
    manifest = pq.read_table(os.path.join(out, schema.MANIFEST_FILE)).to_pylist()
    assert {(r["id"], r["split"]) for r in manifest} == {(e[schema.IMAGE_ID].decode(), e["split"]) for e in examples}


def test_classes_file_keeps_only_those_classes(raw_dataset, tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("strawberry_shortcake\n# a comment\nfrench_toast\n")
    metadata = preprocess.run(["--input", raw_dataset, "--output", str(tmp_path / "ds"),
                               "--classes-file", str(classes)])
    assert metadata["classes"] == ["french_toast", "strawberry_shortcake"]
    assert metadata["images"] == 32


@pytest.mark.parametrize("extra,message", [
    (["--split", "0.9,0.2,-0.1"], "must not be negative"),
    (["--split", "0.5,0.2,0.2"], "must sum to 1"),
    (["--classes-file", "/nonexistent/classes.txt"], "cannot read classes file"),
    (["--shard-size-mb", "0"], "must be positive"),
    (["--runner", "NoSuchRunner"], "--runner NoSuchRunner: Unexpected pipeline runner"),
    (["--runner", "DaskRunner", "--dask_client_address", "127.0.0.1:PORT", "--dask_connection_timeout", "5"],
     "cannot reach the Dask scheduler at 127.0.0.1:"),  # nothing listens there
])
def test_bad_flags_fail_with_one_line(raw_dataset, tmp_path, extra, message):
    out = tmp_path / "ds"
    extra = [arg.replace("PORT", str(free_port())) for arg in extra]
    result = foodpipe("preprocess", "--input", raw_dataset, "--output", str(out), *extra)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_unknown_class_empty_input_and_output_inside_input(raw_dataset, tmp_path):
    classes = tmp_path / "classes.txt"
    classes.write_text("pizza\nfrench_toast\n")
    cases = [
        (["--input", raw_dataset, "--output", str(tmp_path / "a"), "--classes-file", str(classes)], "pizza"),
        (["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "b")], "does not exist"),
        (["--input", raw_dataset, "--output", os.path.join(raw_dataset, "out")], "inside --input"),
    ]
    (tmp_path / "empty" / "images" / "pizza").mkdir(parents=True)
    cases.append((["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "c")], "no images found"))
    a_file = tmp_path / "a-file"  # where a folder would be made: the output's, the result file's
    a_file.write_text("")
    cases += [(["--input", raw_dataset, "--output", str(a_file / "d")], f"cannot make the folder at {a_file / 'd'}"),
              (["--input", raw_dataset, "--output", str(tmp_path / "e"), "--json", str(a_file / "result.json")],
               f"cannot make the --json file's folder at {a_file}: a file is there")]
    for args, message in cases:
        result = foodpipe("preprocess", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(raw_dataset, "out")) and not (tmp_path / "e").exists()
