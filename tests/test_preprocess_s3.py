"""S3 -> S3 against the embedded S3 server process, and the S3 failure modes."""

import json

import pytest

from foodpipe import schema
from tests.conftest import foodpipe

pytestmark = pytest.mark.slow


def test_s3_to_s3(raw_on_s3, s3_env, s3_client, tmp_path):
    result = foodpipe("preprocess", "--input", raw_on_s3, "--output", "s3://datasets/food3",
                      "--shard-size-mb", "0.3", env=s3_env)
    assert result.returncode == 0, result.stderr
    assert "wrote 48" in result.stderr and "rejected 3" in result.stderr
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket="datasets", Prefix="food3/")["Contents"]}
    metadata = json.loads(s3_client.get_object(Bucket="datasets", Key="food3/metadata.json")["Body"].read())
    shards = {f"food3/{s}" for info in metadata["splits"].values() for s in info["shards"]}
    assert keys == shards | {f"food3/{name}" for name in
                             (schema.METADATA_FILE, schema.MANIFEST_FILE, schema.REJECTED_FILE)}
    assert metadata["images"] == 48 and metadata["source"] == raw_on_s3
    # Shards read back with TensorFlow after download: same ids as the manifest.
    import pyarrow.parquet as pq
    import tensorflow as tf

    paths = []
    for key in sorted(shards):
        path = tmp_path / key.split("/")[-1]
        path.write_bytes(s3_client.get_object(Bucket="datasets", Key=key)["Body"].read())
        paths.append(str(path))
    ids = sorted(tf.io.parse_single_example(r, schema.feature_spec())[schema.IMAGE_ID].numpy().decode()
                 for r in tf.data.TFRecordDataset(paths))
    manifest = tmp_path / "manifest.parquet"
    manifest.write_bytes(s3_client.get_object(Bucket="datasets", Key="food3/manifest.parquet")["Body"].read())
    assert ids == sorted(pq.read_table(manifest).column("id").to_pylist())
    secret = __import__("os").environ["AWS_SECRET_ACCESS_KEY"]
    assert secret not in json.dumps(metadata) and secret not in result.stderr


def one_line_failure(result, message, code=2):
    """Bad input found before any worker starts: exit code 2 (README "Exit codes")."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_bucket(raw_on_s3, s3_env):
    one_line_failure(foodpipe("preprocess", "--input", "s3://no-such-bucket/x", "--output", "s3://datasets/y",
                              env=s3_env), "does not exist")
    one_line_failure(foodpipe("preprocess", "--input", raw_on_s3, "--output", "s3://no-such-bucket/y",
                              env=s3_env), "does not exist")


def test_wrong_credentials(raw_on_s3, s3_env, s3_client):
    env = {**s3_env, "AWS_ACCESS_KEY_ID": "not-the-key"}
    one_line_failure(foodpipe("preprocess", "--input", raw_on_s3, "--output", "s3://datasets/wrong", env=env),
                     "rejected the credentials")
    one_line_failure(foodpipe("upload", "/tmp", "s3://raw/x", env=env), "rejected the credentials")
    assert "not-the-key" not in foodpipe("upload", "/tmp", "s3://raw/x", env=env).stderr
    assert "wrong/" not in {o["Key"] for o in s3_client.list_objects_v2(Bucket="datasets").get("Contents", [])}


def test_unreachable_endpoint_fails_fast(raw_on_s3, s3_env):
    env = {**s3_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # discard port: nothing listens
    one_line_failure(foodpipe("preprocess", "--input", raw_on_s3, "--output", "s3://datasets/z", env=env),
                     "cannot reach the S3 endpoint")


def test_an_endpoint_that_never_answers_is_given_up_after_a_few_attempts(raw_on_s3, s3_env):
    """Fail fast, counted rather than timed: the first S3 call gives up after s3.MAX_ATTEMPTS
    connections (Beam's S3 filesystem would retry for minutes), and nothing runs after it."""
    from foodpipe import s3
    from tests.faults import HangUpServer

    server = HangUpServer()
    try:
        result = foodpipe("preprocess", "--input", raw_on_s3, "--output", "s3://datasets/z",
                          env={**s3_env, "AWS_ENDPOINT_URL": server.url})
    finally:
        server.close()
    one_line_failure(result, "cannot reach the S3 endpoint")
    assert server.connections == s3.MAX_ATTEMPTS


def test_empty_input_prefix(raw_on_s3, s3_env):
    one_line_failure(foodpipe("preprocess", "--input", "s3://raw/nothing-here", "--output", "s3://datasets/e",
                              env=s3_env), "no images found")


def test_split_file_and_official_lists_on_s3(raw_on_s3, s3_env, s3_client, tmp_path):
    """``--split-file s3://…`` and ``--split-from meta`` read their lists from the store; a split
    file that is not there is one line, exit 2."""
    import io

    import pyarrow.parquet as pq

    def manifest(prefix):
        body = s3_client.get_object(Bucket="datasets", Key=f"{prefix}/{schema.MANIFEST_FILE}")["Body"].read()
        return {row["id"]: row["split"] for row in pq.read_table(io.BytesIO(body)).to_pylist()}

    train_list = s3_client.get_object(Bucket="raw", Key="food/meta/train.txt")["Body"].read().decode().split()
    test_list = s3_client.get_object(Bucket="raw", Key="food/meta/test.txt")["Body"].read().decode().split()
    assert foodpipe("preprocess", "--input", raw_on_s3, "--output", "s3://datasets/meta-split", "--split-from", "meta",
                    "--quiet", env=s3_env).returncode == 0
    placed = manifest("meta-split")
    assert {i for i, s in placed.items() if s == "test"} == set(test_list)
    assert {i for i, s in placed.items() if s != "test"} == set(train_list)

    wanted = {image_id: ("val" if n % 2 else "test") for n, image_id in enumerate(sorted(placed))}
    s3_client.put_object(Bucket="datasets", Key="lists/splits.csv",
                         Body=("image_id,split\n" + "".join(f"{i},{s}\n" for i, s in wanted.items())).encode())
    done = foodpipe("preprocess", "--input", raw_on_s3, "--output", "s3://datasets/file-split", "--split-file",
                    "s3://datasets/lists/splits.csv", "--unlisted", "skip", "--quiet", env=s3_env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert manifest("file-split") == wanted
    one_line_failure(foodpipe("preprocess", "--input", raw_on_s3, "--output", "s3://datasets/none", "--split-file",
                              "s3://datasets/lists/missing.csv", env=s3_env),
                     "cannot read --split-file s3://datasets/lists/missing.csv: no such file")
