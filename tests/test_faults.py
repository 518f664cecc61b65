"""Faults against real processes on loopback: the S3 server going away (through a proxy, so it
keeps its objects), concurrent jobs into one output, many small objects, concurrent readers."""

import json
import os
import signal
import subprocess
import sys
import tempfile
from urllib.parse import urlparse

import pytest

from beam_pipelines import output
from foodpipe import s3
from foodpipe.errors import FoodpipeError
from tests.conftest import REPO, foodpipe
from tests.faults import WITH_SIGINT, TcpProxy

pytestmark = pytest.mark.slow


def proxy_for(endpoint: str) -> TcpProxy:
    return TcpProxy(urlparse(endpoint).port).start()


def objects(client, bucket, prefix):
    found = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    except client.exceptions.NoSuchBucket:
        pass
    return found


def small_files(root, count, size=2048):
    for index in range(count):
        folder = os.path.join(root, "images", f"class_{index % 10}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{index:05d}.jpg"), "wb") as f:
            f.write(os.urandom(size))
    return {os.path.relpath(os.path.join(d, n), root): os.path.getsize(os.path.join(d, n))
            for d, _, names in os.walk(root) for n in names}


def start(args, env):
    return subprocess.Popen([sys.executable, "-m", "foodpipe", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def test_upload_cut_off_by_an_outage_completes_on_rerun_without_duplicates(s3_endpoint, s3_client, tmp_path):
    expected = small_files(str(tmp_path / "src"), 600, size=16384)
    proxy = proxy_for(s3_endpoint)
    proxy.cut_on(rb"PUT /faults/up/", nth=50)  # the server is gone for the uploader, mid-upload
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
    proc = start(["upload", str(tmp_path / "src"), "s3://faults/up", "--create-bucket", "--quiet",
                  "--workers", "4"], env)
    _, stderr = proc.communicate(timeout=300)
    assert proxy.cut.is_set() and proc.returncode == 3, stderr[-2000:]  # failed during the work
    assert stderr.strip().splitlines()[-1].startswith("foodpipe: error: cannot reach the S3 endpoint")
    assert len(objects(s3_client, "faults", "up/")) < len(expected)

    proxy.start()  # back
    again = foodpipe("upload", str(tmp_path / "src"), "s3://faults/up", "--quiet", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "skipped 0 " not in again.stdout
    assert objects(s3_client, "faults", "up/") == {f"up/{key}": size for key, size in expected.items()}
    proxy.stop()


def test_ctrl_c_during_an_upload_exits_130_at_once_and_a_rerun_completes(s3_endpoint, s3_client, tmp_path):
    """Interrupted while one PUT hangs unanswered (held by the proxy): the command must not wait for
    it. A command that waits is freed only by the client's read timeout, after which it sends that
    PUT again: so no PUT may appear twice."""
    expected = small_files(str(tmp_path / "src"), 40)
    proxy = proxy_for(s3_endpoint)
    proxy.hold_on(rb"PUT /faults/interrupted/", nth=5)
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
    proc = subprocess.Popen([sys.executable, "-c", WITH_SIGINT, "upload", str(tmp_path / "src"),
                             "s3://faults/interrupted", "--create-bucket", "--quiet", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert proxy.cut.wait(timeout=120), "the upload never reached its fifth PUT"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proxy.release()
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "foodpipe: interrupted"
    puts = [line for line in proxy.requests if line.startswith(b"PUT /faults/interrupted/")]
    assert len(puts) >= 5 and len(set(puts)) == len(puts), puts

    again = foodpipe("upload", str(tmp_path / "src"), "s3://faults/interrupted", "--quiet", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert objects(s3_client, "faults", "interrupted/") == {f"interrupted/{k}": size for k, size in expected.items()}
    proxy.stop()


def test_preprocess_cut_off_by_outages_fails_clearly_and_a_rerun_is_complete(raw_on_s3, s3_endpoint, s3_client):
    """The server goes away at the workers' first image read; on the rerun, at the job's last write
    (its summary, with every shard staged); the third run finds it back."""
    proxy = TcpProxy(urlparse(s3_endpoint).port).cut_on(rb"GET /raw/food/images/").start()
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
    args = ["preprocess", "--input", raw_on_s3, "--output", "s3://datasets/cut", "--shard-size-mb", "0.2"]
    for next_cut in [rb"PUT /datasets/cut/\.staging-\w+/summary\.json", None]:
        failed = foodpipe(*args, env=env, timeout=300)
        assert proxy.cut.is_set() and failed.returncode == 3, failed.stderr[-2000:]
        last = failed.stderr.strip().splitlines()[-1]
        assert last.startswith("foodpipe: error: cannot reach the S3 endpoint") and "running the job" in last
        assert "cut/metadata.json" not in objects(s3_client, "datasets", "cut/")  # never looks complete
        if next_cut:
            proxy.cut_on(next_cut)
        proxy.start()  # back

    assert any("/.staging-" in key for key in objects(s3_client, "datasets", "cut/"))  # the failed run's shards
    again = foodpipe(*args, env=env)
    proxy.stop()
    assert again.returncode == 0, again.stderr[-2000:]
    metadata = json.loads(s3_client.get_object(Bucket="datasets", Key="cut/metadata.json")["Body"].read())
    shards = [shard for split in metadata["splits"].values() for shard in split["shards"]]
    # One run's files and nothing else: no staging folder, lock or shard left by the failed runs.
    assert set(objects(s3_client, "datasets", "cut/")) == {
        f"cut/{name}" for name in shards + ["metadata.json", "manifest.parquet", "rejected.jsonl"]}
    ids = [record_id for shard in shards for record_id in shard_ids(s3_client, f"cut/{shard}")]
    assert len(ids) == len(set(ids)) == metadata["images"] == 48


def shard_ids(client, key: str) -> list[str]:
    import tensorflow as tf

    from foodpipe import schema

    data = client.get_object(Bucket="datasets", Key=key)["Body"].read()
    with tempfile.NamedTemporaryFile(suffix=".tfrecord") as f:
        f.write(data)
        f.flush()
        return [tf.io.parse_single_example(r, schema.feature_spec())[schema.IMAGE_ID].numpy().decode()
                for r in tf.data.TFRecordDataset(f.name)]


def test_a_second_preprocess_into_the_same_output_refuses(raw_dataset, tmp_path):
    """While a live run holds the output's lock (this test process, inside ``output.exclusive``:
    held for certain, not for a guessed while), a preprocess into it refuses and writes nothing;
    once released, the next run writes the dataset and releases the lock."""
    out = str(tmp_path / "dataset")
    lock = os.path.join(out, output.LOCK_FILE)
    with output.exclusive(out, s3.S3Settings()):
        second = foodpipe("preprocess", "--input", raw_dataset, "--output", out)
        assert second.returncode == 2 and "is being written by another preprocess run" in second.stderr
        assert f"pid {os.getpid()}" in second.stderr and os.listdir(out) == [output.LOCK_FILE]
    first = foodpipe("preprocess", "--input", raw_dataset, "--output", out)
    assert first.returncode == 0, first.stderr[-2000:]
    with open(os.path.join(out, "metadata.json")) as f:
        metadata = json.load(f)
    assert metadata["images"] == 48 and not os.path.exists(lock)
    names = set(os.listdir(out))
    shards = {shard for split in metadata["splits"].values() for shard in split["shards"]}
    assert {n for n in names if n.endswith(".tfrecord")} == shards  # one run's shards, nothing mixed


def test_commit_removes_staging_folders_left_by_failed_runs(tmp_path):
    out = tmp_path / "ds"
    for name in (".staging-dead00000000", ".staging-live00000000"):
        (out / name).mkdir(parents=True)
        (out / name / "manifest.parquet").write_bytes(name.encode())
    output.commit(str(out / ".staging-live00000000"), str(out), ["manifest.parquet"], {"images": 0}, s3.S3Settings())
    assert sorted(os.listdir(out)) == ["manifest.parquet", "metadata.json"]
    assert (out / "manifest.parquet").read_bytes() == b".staging-live00000000"


def test_the_output_lock_on_s3_admits_one_holder(s3_endpoint, s3_client):
    settings = s3.S3Settings(endpoint_url=s3_endpoint)
    s3_client.create_bucket(Bucket="locks")
    with output.exclusive("s3://locks/ds", settings):
        with pytest.raises(FoodpipeError, match="being written by another preprocess run"):
            with output.exclusive("s3://locks/ds", settings):
                pass
    assert objects(s3_client, "locks", "ds/") == {}
    with output.exclusive("s3://locks/ds", settings):  # released: free again
        pass


def test_upload_of_5000_small_objects_loses_nothing(s3_env, s3_client, tmp_path):
    expected = small_files(str(tmp_path / "many"), 5000, size=256)
    result = foodpipe("upload", str(tmp_path / "many"), "s3://many/objects", "--create-bucket", "--quiet",
                      env=s3_env, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert objects(s3_client, "many", "objects/") == {f"objects/{key}": size for key, size in expected.items()}


def test_two_trainers_read_one_s3_dataset_at_once(raw_on_s3, s3_env, tmp_path):
    made = foodpipe("preprocess", "--input", raw_on_s3, "--output", "s3://datasets/shared", "--shard-size-mb", "0.2",
                    env=s3_env)
    assert made.returncode == 0, made.stderr[-2000:]
    args = ["train", "--data", "s3://datasets/shared", "--image-size", "32", "--num-blocks", "2", "--filters", "4",
            "--dense-units", "8", "--batch-size", "8", "--epochs", "1"]
    trainers = [start([*args, "--mlflow-uri", str(tmp_path / f"mlruns{i}")], s3_env) for i in range(2)]
    for trainer in trainers:
        stdout, stderr = trainer.communicate(timeout=600)
        assert trainer.returncode == 0, stderr[-3000:]
        assert json.loads(stdout.strip().splitlines()[-1])["epochs"] == 1


def test_a_lock_left_by_a_dead_run_on_this_host_is_taken_over(tmp_path):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.makedirs(tmp_path / "ds")
    (tmp_path / "ds" / output.LOCK_FILE).write_text(json.dumps(
        {"started": "2026-01-01T00:00:00+00:00", "host": socket.gethostname(), "pid": dead.pid}))
    with output.exclusive(str(tmp_path / "ds"), s3.S3Settings()):
        holder = json.loads((tmp_path / "ds" / output.LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid()
    assert not (tmp_path / "ds" / output.LOCK_FILE).exists()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_runs_that_find_a_dead_holder_take_the_lock_over_one_at_a_time(where, tmp_path, request, monkeypatch):
    """Both contenders have seen the dead holder's lock before either takes it over (a barrier
    placed right after that check): exactly one may hold the lock."""
    import socket
    import threading

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = json.dumps({"started": "2026-01-01T00:00:00+00:00", "host": socket.gethostname(), "pid": dead.pid})
    settings = s3.S3Settings()
    if where == "s3":
        settings = s3.S3Settings(endpoint_url=request.getfixturevalue("s3_endpoint"))
        client = request.getfixturevalue("s3_client")
        client.create_bucket(Bucket="takeover")
        client.put_object(Bucket="takeover", Key=f"ds/{output.LOCK_FILE}", Body=stale.encode())
        target = "s3://takeover/ds"
    else:
        os.makedirs(tmp_path / "ds")
        (tmp_path / "ds" / output.LOCK_FILE).write_text(stale)
        target = str(tmp_path / "ds")

    # A timeout only so that a contender that failed unexpectedly breaks the barrier instead of hanging.
    both_saw_it_dead, both_tried = threading.Barrier(2, timeout=120), threading.Barrier(2, timeout=120)
    is_dead = output._is_dead_local_run

    def is_dead_then_wait(holder):
        verdict = is_dead(holder)
        both_saw_it_dead.wait()
        return verdict

    monkeypatch.setattr(output, "_is_dead_local_run", is_dead_then_wait)
    outcomes = []

    def contender():
        try:
            with output.exclusive(target, settings):
                outcomes.append("held")
                both_tried.wait()  # hold the lock until the other run has tried
        except FoodpipeError as exc:
            outcomes.append("refused" if "being written by another preprocess run" in str(exc) else str(exc))
            both_tried.wait()

    threads = [threading.Thread(target=contender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["held", "refused"]
