import json
import os
import tarfile

import pytest

from tests.conftest import foodpipe


def keys(client, bucket, prefix):
    return {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}


def test_upload_is_resumable(raw_dataset, s3_env, s3_client):
    first = foodpipe("upload", raw_dataset, "s3://upl/a", "--create-bucket", "--quiet", env=s3_env)
    assert first.returncode == 0, first.stderr
    uploaded = keys(s3_client, "upl", "a/")
    files = [os.path.join(d, f) for d, _, fs in os.walk(raw_dataset) for f in fs]
    assert len(uploaded) == len(files) and "a/meta/classes.txt" in uploaded
    for path in files:
        assert uploaded["a/" + os.path.relpath(path, raw_dataset)] == os.path.getsize(path)

    victim = sorted(k for k in uploaded if k.startswith("a/images/"))[0]
    s3_client.delete_object(Bucket="upl", Key=victim)
    again = foodpipe("upload", raw_dataset, "s3://upl/a", "--quiet", env=s3_env)
    assert again.returncode == 0
    assert "uploaded 1 objects" in again.stdout and f"skipped {len(files) - 1}" in again.stdout
    line = json.loads(again.stdout.strip().splitlines()[-1])  # the result line
    assert (line["uploaded"], line["skipped"], line["dest"]) == (1, len(files) - 1, "s3://upl/a")
    assert keys(s3_client, "upl", "a/") == uploaded


def test_upload_of_the_official_archive_layout(raw_dataset, s3_env, s3_client, tmp_path):
    archive = tmp_path / "food-101.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(raw_dataset, arcname="food-101")
    result = foodpipe("upload", str(archive), "s3://upl/b", "--create-bucket", "--quiet", env=s3_env)
    assert result.returncode == 0, result.stderr
    expected = {os.path.relpath(os.path.join(d, f), raw_dataset): os.path.getsize(os.path.join(d, f))
                for d, _, fs in os.walk(raw_dataset) for f in fs}
    assert {k[len("b/"):]: size for k, size in keys(s3_client, "upl", "b/").items()} == expected


@pytest.mark.parametrize("src,dest,message", [
    ("/nonexistent", "s3://upl/x", "does not exist"),
    (".", "/local/path", "must be s3://"),
    (".", "s3://no-such-bucket/x", "does not exist"),
])
def test_upload_bad_input(s3_env, src, dest, message):
    result = foodpipe("upload", src, dest, "--quiet", env=s3_env)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
