"""The tf.data service (``foodpipe input-service``, ``--input-service``): a dispatcher and workers as
their own processes on loopback, the trainer (or this test) as the client."""

import collections
import json
import os
import signal
import sys

import mlflow
import pytest
import tensorflow as tf

from foodpipe import datasets, schema
from foodpipe.errors import FoodpipeError, RunFailed
from tests.conftest import InputService, Watched, foodpipe, free_port, free_port_pair
from tests.test_trainer import TINY, last_json
from tfdata import pipeline, service
from tfdata.config import InputConfig


def train_ids(data: str) -> list[bytes]:
    return [row["id"].encode() for row in datasets.read_manifest(data, split=schema.TRAIN)]


def test_each_epoch_through_the_service_yields_every_train_record_once(input_service, trainer_dataset):
    """Two epochs read through a dispatcher and two worker processes: each holds every train id
    exactly once, as augmented uint8 batches of the asked size (the augmentation ran on a worker:
    this process never registered it)."""
    config = InputConfig(image_size=32, batch_size=4, input_service=input_service.address)
    epochs = pipeline.train_dataset(trainer_dataset, schema.TRAIN, config, with_ids=True)
    expected = collections.Counter(train_ids(trainer_dataset))
    for _ in range(2):
        seen = collections.Counter()
        for images, labels, ids in epochs:
            assert images.dtype == tf.uint8 and images.shape[1:] == (32, 32, 3) and len(labels) == len(ids)
            seen.update(ids.numpy().tolist())
        assert seen == expected
    assert service._SERVED == []


def test_a_worker_without_foodpipes_augmentation_is_named_in_one_line():
    """A plain TensorFlow worker (here, one in this process, which never registered the callback)
    fails the first batch with an error ``explain`` turns into one line naming the fix."""
    dispatcher = tf.data.experimental.service.DispatchServer()
    worker = tf.data.experimental.service.WorkerServer(tf.data.experimental.service.WorkerConfig(
        dispatcher_address=dispatcher.target.split("://")[1]))
    batch = tf.data.Dataset.from_tensors(tf.zeros([2, 16, 16, 3], tf.uint8))
    config = InputConfig(image_size=16)
    remote = service.distribute(batch.map(lambda images: service.augment_on_worker(images, config)),
                                dispatcher.target)
    iterator = iter(remote)
    with pytest.raises(tf.errors.OpError) as raised:
        next(iterator)
    explained = service.explain(raised.value, dispatcher.target)
    assert isinstance(explained, RunFailed) and "foodpipe input-service worker" in str(explained)
    assert "\n" not in str(explained)
    del iterator, raised  # its client would heartbeat to the stopped dispatcher for the rest of the session
    worker._stop(), dispatcher._stop()


@pytest.mark.parametrize("address,message", [
    ("localhost", "is not grpc://HOST:PORT"),
    ("grpc://localhost:port", "is not grpc://HOST:PORT"),
    ("http://localhost:5050/x", "is not grpc://HOST:PORT"),
])
def test_a_malformed_service_address_is_refused(address, message):
    with pytest.raises(FoodpipeError, match=message):
        InputConfig(input_service=address)


def test_an_unreachable_dispatcher_fails_train_and_bench_in_one_line_before_any_run(trainer_dataset, tmp_path):
    address = f"grpc://127.0.0.1:{free_port()}"  # nothing listens there
    store = tmp_path / "mlruns"
    trained = foodpipe("train", "--data", trainer_dataset, *TINY, "--epochs", "1", "--input-service", address,
                       "--mlflow-uri", store.as_uri())
    benched = foodpipe("bench", "input", "--data", trainer_dataset, "--image-size", "32", "--images", "8",
                       "--input-service", address)
    for result in (trained, benched):
        assert result.returncode == 2, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("foodpipe: error: input service") and "unreachable" in lines[0]
    assert not store.exists()  # train stopped before it made a run


def test_several_trainers_on_one_service_are_refused_before_any_run(trainer_dataset, monkeypatch):
    """Each trainer of a TF_CONFIG cluster would get a different number of batches per epoch."""
    from tests.test_trainer import train_config
    from trainer import train

    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    config = train_config(data=trainer_dataset, input_service=f"grpc://127.0.0.1:{free_port()}")
    with pytest.raises(FoodpipeError, match="--input-service feeds one trainer"):
        train.read_dataset(config)


def test_the_servers_say_when_they_serve_when_a_peer_goes_and_stop_cleanly_on_sigterm():
    """A worker started before its dispatcher waits for it and says so, and serves once it is up;
    the dispatcher names the
    worker joining and, once the worker is killed (SIGKILL: no goodbye), going; a dispatcher killed
    is noticed by its worker, which carries on when one is back; SIGTERM stops both, exit 0."""
    port, worker_port = free_port_pair(), free_port()
    worker = Watched([sys.executable, "-m", "foodpipe", "input-service", "worker", "--dispatcher",
                      f"127.0.0.1:{port}", "--port", str(worker_port), "--address", "127.0.0.1"])
    dispatcher = second = None
    try:
        worker.wait_for(r"dispatcher 127\.0\.0\.1:\d+ is not reachable yet")
        dispatcher = Watched([sys.executable, "-m", "foodpipe", "input-service", "dispatcher", "--port", str(port)])
        dispatcher.wait_for(rf"serving on grpc://\S+:{port}")
        worker.wait_for(rf"serving on 127\.0\.0\.1:{worker_port}")
        dispatcher.wait_for(rf"worker 127\.0\.0\.1:{worker_port} joined \(1 worker\)")

        os.killpg(dispatcher.proc.pid, signal.SIGKILL)
        went = len(worker.lines)
        worker.wait_for(r"dispatcher 127\.0\.0\.1:\d+ went away", start=went)
        dispatcher = Watched([sys.executable, "-m", "foodpipe", "input-service", "dispatcher", "--port", str(port)])
        worker.wait_for("is back", start=went)
        dispatcher.wait_for(rf"worker 127\.0\.0\.1:{worker_port} joined \(1 worker\)")

        second = Watched([sys.executable, "-m", "foodpipe", "input-service", "worker", "--dispatcher",
                          f"127.0.0.1:{port}", "--port", "0", "--address", "127.0.0.1"])
        dispatcher.wait_for(r"joined \(2 workers\)")
        os.killpg(second.proc.pid, signal.SIGKILL)
        dispatcher.wait_for(r"worker 127\.0\.0\.1:\d+ went away \(1 worker\)")

        for server in (worker, dispatcher):
            os.killpg(server.proc.pid, signal.SIGTERM)
            assert server.proc.wait(timeout=60) == 0, server.output()
            assert server.wait_for("stopped$")
            assert "Traceback" not in server.output()
    finally:
        for server in (worker, dispatcher, second):
            if server:
                server.stop()


def run_status(store, run_id: str) -> str:
    return mlflow.MlflowClient(store).get_run(run_id).info.status


@pytest.mark.slow
def test_training_through_the_service_stops_in_one_line_when_a_worker_dies_and_resumes(trainer_dataset, tmp_path):
    """Training reads its train split through a dispatcher and two workers. One worker is
    SIGKILLed in the middle of epoch 2 (a cut point: the epoch's first step printed): an epoch
    with a task on it cannot end (TF 2.16 waits for the dead worker), so the trainer stops with one line,
    exit 3, its MLflow run FAILED. The worker back at its address, the same command resumes from the
    checkpoint, in the same run, and finishes (FINISHED, every epoch's metrics, the model logged)."""
    services = InputService(workers=2)
    store = f"sqlite:///{tmp_path}/mlflow.db"
    # A stall: 20 s without a batch (a live worker's batch takes well under a second, with the other
    # test process busy beside it too).
    args = [sys.executable, "-m", "foodpipe", "train", "--data", trainer_dataset, *TINY, "--epochs", "3",
            "--input-service", services.address, "--input-service-timeout", "20",
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--mlflow-uri", store, "--experiment", "service"]
    env = {**os.environ, "FOODPIPE_PROGRESS_SECONDS": "0"}  # a line per step: the cut point
    trainer = Watched(args, env=env)
    try:
        trainer.wait_for(r"^Epoch 2/3 - step 1/")
        killed = services.workers.pop()
        os.killpg(killed.proc.pid, signal.SIGKILL)
        services.dispatcher.wait_for(rf"worker 127\.0\.0\.1:{killed.port} went away")
        assert trainer.proc.wait(timeout=600) == RunFailed.exit_code, trainer.output()
        errors = [line for line in trainer.lines if line and line.startswith("foodpipe: error:")]
        assert len(errors) == 1 and f"no batch from input service {services.address}" in errors[0]
        assert "Traceback" not in trainer.output()
        state = json.load(open(tmp_path / "ckpt" / "state.json"))
        run_id = state["extra"]["run_id"]
        # The stall comes in epoch 2, or in epoch 3 if the dead worker's part of epoch 2 had all been
        # received: the next epoch's job has a task on it again (TF 2.16 never drops a worker).
        done = state["epoch"]
        assert done in (1, 2) and run_status(store, run_id) == "FAILED"

        services.workers.append(services.start_worker(killed.port))
        resumed = Watched(args, env=env)
        assert resumed.proc.wait(timeout=600) == 0, resumed.output()
        resumed.wait_for(f"Resumed from epoch {done}")
        assert not any(line and line.startswith(f"Epoch {done}/3 -") for line in resumed.lines)
    finally:
        trainer.stop()
        services.stop()
    result = last_json(resumed.output())
    assert result["run_id"] == run_id and run_status(store, run_id) == "FINISHED"
    history = mlflow.MlflowClient(store).get_metric_history(run_id, "val_accuracy")
    assert {m.step for m in history} >= {1, 2, 3}
    assert mlflow.MlflowClient(store).get_run(run_id).data.params["input_service"] == services.address
