"""Shared fixtures: real processes on loopback (the S3 server, a Dask cluster) and small datasets."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from foodpipe import s3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCESS_KEY, SECRET_KEY = s3.EMBEDDED_ACCESS_KEY, s3.EMBEDDED_SECRET_KEY

# `make test` runs the test files on two processes (pytest-xdist, a file's tests on one of them, in
# the order collected): the files with the longest tests (a --durations run's figures) go first, so
# that none is left to run alone at the end.
LONGEST_FIRST = ("test_trainer.py", "test_quality.py", "test_tune.py", "test_demo.py", "test_input_service.py")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = os.path.basename(str(item.path))
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order


def start_process(args, ready: str, env=None, timeout=300) -> tuple[subprocess.Popen, str]:
    """Start ``args``, wait for a line matching ``ready``; returns the process and that line."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if re.search(ready, line):
            # Keep reading what it prints: a full pipe would block the process on its next write.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, line.strip()
    stop_process(proc)
    raise RuntimeError(f"{args} did not print {ready!r}:\n{''.join(seen)}")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def foodpipe(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    """Run the real ``foodpipe`` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "foodpipe", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


class Watched:
    """A process whose output lines a thread collects: ``wait_for(regex)`` returns the first line
    from ``start`` on that matches, as soon as it is printed (the timeout only ends a broken test)."""

    def __init__(self, args, env=None):
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=REPO, start_new_session=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append(None)  # the end
            self._changed.notify_all()

    def wait_for(self, pattern: str, start: int = 0, timeout: float = 300) -> str:
        def found():
            return next((line for line in self.lines[start:] if line is None or re.search(pattern, line)), False)

        with self._changed:
            line = self._changed.wait_for(found, timeout)
        if not line:
            raise AssertionError(f"{self.proc.args} did not print {pattern!r}:\n{self.output()}")
        return line

    def output(self) -> str:
        return "\n".join(line for line in self.lines if line is not None)

    def stop(self) -> int:
        stop_process(self.proc)
        return self.proc.returncode


def free_port_pair() -> int:
    """A free port whose next one is free too (a dispatcher and its presence channel)."""
    import socket

    while True:
        port = free_port()
        if port < 65535:
            try:
                socket.create_server(("127.0.0.1", port + 1)).close()
                return port
            except OSError:
                continue


class InputService:
    """``foodpipe input-service``: a dispatcher and ``workers`` workers, each its own process on
    loopback, started and waited for (the dispatcher names each worker that joins)."""

    def __init__(self, workers: int = 2, env=None):
        self.port, self.env = free_port_pair(), env
        self.address = f"grpc://127.0.0.1:{self.port}"
        # All at once (each process spends seconds importing TensorFlow): workers wait for their dispatcher.
        self.dispatcher = Watched([sys.executable, "-m", "foodpipe", "input-service", "dispatcher",
                                   "--port", str(self.port)], env=env)
        self.workers = [self.start_worker(free_port(), wait=False) for _ in range(workers)]
        for worker in self.workers:
            worker.wait_for("serving on")
        self.dispatcher.wait_for(rf"\({workers} workers\)")

    def start_worker(self, port: int, wait: bool = True) -> "Watched":
        worker = Watched([sys.executable, "-m", "foodpipe", "input-service", "worker", "--dispatcher",
                          f"127.0.0.1:{self.port}", "--port", str(port), "--address", "127.0.0.1"], env=self.env)
        worker.port = port
        if wait:
            worker.wait_for("serving on")
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.dispatcher.stop()


@pytest.fixture(scope="session")
def input_service(s3_endpoint):
    """A dispatcher and two workers, reading S3 through the embedded server as any command does."""
    service = InputService(env={**os.environ, "AWS_ENDPOINT_URL": s3_endpoint})
    yield service
    service.stop()


@pytest.fixture(scope="session", autouse=True)
def aws_credentials():
    """Every test and every process it starts talks to the embedded server with its key."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")}
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    os.environ.pop("AWS_ENDPOINT_URL", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def s3_endpoint():
    """``foodpipe s3-server`` as its own process on a free loopback port."""
    proc, line = start_process([sys.executable, "-m", "foodpipe", "s3-server", "--port", "0"], r"S3 endpoint: ")
    endpoint = line.split("S3 endpoint: ", 1)[1]
    yield endpoint
    stop_process(proc)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mlflow_server(root, port: int | None = None, extra_args=(), env=None) -> tuple[subprocess.Popen, str]:
    """A real ``mlflow server`` process over HTTP (SQLite backend, artifacts proxied to a folder)."""
    port = port or free_port()
    proc, _ = start_process(
        [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--artifacts-destination", os.path.join(root, "artifacts"), *extra_args],
        ready=r"Uvicorn running on", env=env, timeout=120)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    proc, uri = start_mlflow_server(str(tmp_path_factory.mktemp("mlflow-server")))
    yield uri
    stop_process(proc)


@pytest.fixture()
def s3_env(s3_endpoint):
    """Environment for a subprocess pointed at the embedded S3 server."""
    return {**os.environ, "AWS_ENDPOINT_URL": s3_endpoint}


@pytest.fixture(scope="session")
def s3_client(s3_endpoint):
    return s3.S3Settings(endpoint_url=s3_endpoint).boto3_client()


@pytest.fixture(scope="session")
def raw_dataset(tmp_path_factory):
    """3 classes x 16 Food-101-sized images, plus 3 broken files."""
    from foodpipe.tools import synth

    root = str(tmp_path_factory.mktemp("raw"))
    synth.generate(synth.SynthConfig(root, classes=3, per_class=16, seed=7, corrupt=3))
    return root


@pytest.fixture(scope="session")
def trainer_dataset(raw_dataset, tmp_path_factory):
    """``raw_dataset`` preprocessed into small shards: what the trainer tests train on."""
    from beam_pipelines import preprocess

    output = str(tmp_path_factory.mktemp("train-data"))
    preprocess.run(["--input", raw_dataset, "--output", output, "--shard-size-mb", "0.15", "--seed", "3"])
    return output


@pytest.fixture(scope="session")
def raw_on_s3(raw_dataset, s3_endpoint, s3_client):
    """``raw_dataset`` uploaded to ``s3://raw/food``; an empty ``datasets`` bucket beside it."""
    result = foodpipe("upload", raw_dataset, "s3://raw/food", "--create-bucket", "--quiet",
                      env={**os.environ, "AWS_ENDPOINT_URL": s3_endpoint})
    assert result.returncode == 0, result.stderr
    s3_client.create_bucket(Bucket="datasets")
    return "s3://raw/food"


def read_local_dataset(directory: str) -> tuple[dict, list[dict]]:
    """``(metadata, examples)`` of a preprocessed dataset on disk, examples in shard order."""
    import json

    import tensorflow as tf

    from foodpipe import schema

    with open(os.path.join(directory, schema.METADATA_FILE)) as f:
        metadata = json.load(f)
    examples = []
    for split_name, info in metadata["splits"].items():
        for shard in info["shards"]:
            for record in tf.data.TFRecordDataset(os.path.join(directory, shard)):
                parsed = tf.io.parse_single_example(record, schema.feature_spec())
                example = {key: value.numpy() for key, value in parsed.items()}
                examples.append({**example, "split": split_name, "shard": shard})
    return metadata, examples
