"""Hostile names and links in the raw input: odd characters, '..' keys, symlinks. The job never
crashes; each file is accepted correctly or rejected with a reason."""

import json
import os
import shutil

import pyarrow.parquet as pq

from beam_pipelines import preprocess
from tests.conftest import foodpipe
from tests.test_images import jpeg


def rejected(output):
    with open(os.path.join(output, "rejected.jsonl")) as f:
        return {json.loads(line)["uri"]: json.loads(line)["reason"] for line in f}


def test_odd_names_and_symlinks_in_a_local_input(tmp_path):
    images = tmp_path / "raw" / "images"
    odd = {"crème brûlée": 6, "fish & chips (v2)": 6, "日本 料理": 6}
    for folder, count in odd.items():
        os.makedirs(images / folder)
        for index in range(count):
            (images / folder / f"photo {index} ü.jpg").write_bytes(jpeg(size=(80, 64), seed=index))
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(jpeg(size=(80, 64), seed=99))
    os.symlink(outside, images / "crème brûlée" / "link-outside.jpg")
    os.symlink(images / "crème brûlée" / "photo 0 ü.jpg", images / "crème brûlée" / "link-inside.jpg")

    output = str(tmp_path / "out")
    metadata = preprocess.run(["--input", str(tmp_path / "raw"), "--output", output])
    assert metadata["classes"] == sorted(odd)
    ids = {row["id"] for row in pq.read_table(os.path.join(output, "manifest.parquet")).to_pylist()}
    assert "crème brûlée/photo 3 ü" in ids and "crème brûlée/link-inside" in ids
    assert "crème brûlée/link-outside" not in ids
    reasons = rejected(output)
    assert reasons[str(images / "crème brûlée" / "link-outside.jpg")] == "symbolic link to a file outside the input folder"
    assert metadata["images"] == 19 and metadata["rejected"] == 1


def test_dot_dot_and_unicode_keys_on_s3(s3_client, s3_env, tmp_path):
    s3_client.create_bucket(Bucket="hostile")
    keys = [f"raw/images/{cls}/{name} {i}.jpg" for cls, name in (("a b", "über"), ("c%d", "x+y")) for i in range(6)]
    for index, key in enumerate(keys):
        s3_client.put_object(Bucket="hostile", Key=key, Body=jpeg(size=(80, 64), seed=index))
    evil = ["raw/images/../up.jpg", "raw/images/./dot.jpg", "raw/images/a b/../escape.jpg"]
    for key in evil:
        s3_client.put_object(Bucket="hostile", Key=key, Body=jpeg(size=(80, 64), seed=7))
    output = str(tmp_path / "out")
    result = foodpipe("preprocess", "--input", "s3://hostile/raw", "--output", output, env=s3_env)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(output, "metadata.json")) as f:
        metadata = json.load(f)
    assert metadata["classes"] == ["a b", "c%d"] and metadata["images"] == 12
    reasons = rejected(output)
    for key in evil[:2]:  # at the depth of images/<class>/<file>: read, and rejected with a reason
        assert reasons[f"s3://hostile/{key}"] == "path has a '.' or '..' segment"
    manifest = pq.read_table(os.path.join(output, "manifest.parquet")).to_pylist()
    assert not any(".." in row["uri"] for row in manifest)  # deeper keys are not in the layout at all
    assert {row["class_name"] for row in manifest} == {"a b", "c%d"}
    shutil.rmtree(output)
