"""The trainer, evaluate/select/predict and the serving model, against a real ``mlflow server``."""

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
from urllib.parse import urlparse

import numpy as np
import pytest
import tensorflow as tf

import models
from beam_pipelines import preprocess
from foodpipe import datasets, scratch
from foodpipe.config import from_flat
from foodpipe.errors import FoodpipeError
from tests.conftest import REPO, foodpipe, free_port, start_mlflow_server, stop_process
from tests.faults import TcpProxy
from tfdata import pipeline
from tfdata.config import InputConfig
from trainer import serving, strategy
from trainer.config import TrainConfig

TINY = ["--image-size", "32", "--num-blocks", "2", "--filters", "4", "--dense-units", "8", "--batch-size", "8"]


def train_config(**values) -> TrainConfig:
    """A TrainConfig from flat settings, as a command line or a config file gives them."""
    return from_flat(TrainConfig, values)


@pytest.fixture(scope="module")
def dataset(trainer_dataset):
    return trainer_dataset


def epoch_lines(stdout: str) -> list[str]:
    """The trainer's per-epoch lines (not its progress lines within an epoch)."""
    return [line for line in stdout.splitlines() if line.startswith("Epoch ") and " - step " not in line]


def last_json(stdout: str):
    return json.loads(stdout.strip().splitlines()[-1])


def train(dataset, *args, env=None, timeout=600):
    result = foodpipe("train", "--data", dataset, *TINY, *args, env=env, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def trained(dataset, mlflow_server, tmp_path_factory):
    """``(result line, stdout, the run's temporary folder)``: a 2-epoch run logged to the server."""
    temporary = str(tmp_path_factory.mktemp("trainer-tmp"))
    result = train(dataset, "--epochs", "2", "--mlflow-uri", mlflow_server, "--experiment", "smoke",
                   env={**os.environ, "TMPDIR": temporary})
    return last_json(result.stdout), result.stdout, temporary


def client_for(uri):
    """A client of ``uri``, also made MLflow's current tracking URI: ``runs:/RUN/model`` resolves to
    the run's logged model through the current URI, not the client's."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


@pytest.mark.slow
def test_train_logs_params_metrics_artifacts_and_model_to_the_server(trained, dataset, mlflow_server):
    result, stdout, temporary = trained
    # The plots and the saved model (~26 MB) went to the server; their local copies are gone.
    assert [name for name in os.listdir(temporary) if name.startswith("foodpipe-")] == []
    assert set(result) >= {"run_id", "model_uri", "val_accuracy", "epochs"} and result["epochs"] == 2
    assert "strategy: DefaultStrategy with 1 replica(s)" in stdout
    client = client_for(mlflow_server)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model"] == "resnet" and params["num_blocks"] == "2" and params["data"] == dataset
    assert "weights" not in params and "mlflow_uri" not in params  # nasnet-only; may hold credentials
    with open(os.path.join(dataset, "metadata.json"), "rb") as f:
        assert params["dataset_metadata_sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert run.data.tags["tensorflow_version"] == tf.__version__ and "CPU" in run.data.tags["devices"]
    for param in ("framing", "flip", "rotate_degrees", "brightness_contrast", "noise_std", "blur",
                  "augment_probability", "crop_area_min", "lr_schedule", "warmup_epochs", "keep", "bn_momentum"):
        assert param in params, param
    history = {key: metric_history(client, result["run_id"], key)
               for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr")}
    # Cosine with one warm-up epoch, logged at each epoch's end: the peak, then 0 at the last step.
    assert sorted(history["lr"]) == [1, 2] and history["lr"][1] == pytest.approx(1e-3) and history["lr"][2] < 1e-9
    # --keep best: the kept epoch's metrics once more after the last epoch, as MLflow's autologging does.
    kept = result["kept_epoch"]
    assert kept == max((1, 2), key=lambda epoch: (history["val_accuracy"][epoch], -epoch))
    assert run.data.metrics["kept_epoch"] == kept
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert sorted(history[key]) == [1, 2, 3] and history[key][3] == history[key][kept], key
    assert abs(run.data.metrics["val_accuracy"] - result["val_accuracy"]) < 1e-6
    artifacts = set()
    for top in ("plots", "dataset", "model", "model/data", "model/data/saved_model", "model/code"):
        artifacts |= {a.path for a in client.list_artifacts(result["run_id"], top)}
    assert {"plots/training_curves.png", "plots/confusion_matrix.png", "dataset/metadata.json", "model/MLmodel",
            "model/data/saved_model/saved_model.pb", "model/data/model.keras", "model/code/foodpipe_pyfunc.py",
            "model/code/foodpipe_images.py"} <= artifacts
    assert result["model_uri"] == f"runs:/{result['run_id']}/model"
    # Lineage: the dataset as the run's MLflow dataset input (the UI's Datasets column), by its digest.
    digest = params["dataset_metadata_sha256"]
    (used,) = run.inputs.dataset_inputs
    assert (used.dataset.name, used.dataset.digest, json.loads(used.dataset.source)) == \
        (os.path.basename(dataset), digest[:32], {"uri": dataset})
    profile = json.loads(used.dataset.profile)
    assert profile["metadata_sha256"] == digest and profile["classes"] == datasets.load_metadata(dataset)["classes"]
    assert profile["splits"]["train"] == datasets.load_metadata(dataset)["splits"]["train"]["count"]
    assert [(tag.key, tag.value) for tag in used.tags] == [("mlflow.data.context", "training")]
    # The model as an MLflow logged model of the run, its val metrics on that dataset.
    (model,) = client.search_logged_models([run.info.experiment_id], filter_string="name = 'model'")
    assert model.source_run_id == result["run_id"] and model.params["num_blocks"] == "2"
    assert {metric.key: metric.dataset_digest for metric in model.metrics} == \
        {"val_loss": digest[:32], "val_accuracy": digest[:32]}


@pytest.mark.slow
def test_evaluate_select_register_and_predict_end_to_end(trained, dataset, mlflow_server, tmp_path):
    result, _, _ = trained
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    json_file = tmp_path / "out" / "scores.json"
    json_file.parent.mkdir()
    evaluated = foodpipe("evaluate", "--model", result["model_uri"], "--data", dataset, "--split", "val",
                         "--json", str(json_file), env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scores = last_json(evaluated.stdout)
    assert json.loads(json_file.read_text()) == scores
    metadata = datasets.load_metadata(dataset)
    assert scores["count"] == metadata["splits"]["val"]["count"] and 0 <= scores["accuracy"] <= 1
    assert {"macro_f1", "weighted_f1", "top_k_accuracy", "ece"} <= set(scores) and scores["top_k"] == 2
    assert scores["top_k_accuracy"] >= scores["accuracy"]
    # The one pass agrees with the trainer's own val accuracy for the same (kept) weights.
    assert scores["accuracy"] == pytest.approx(result["val_accuracy"], abs=1e-6)
    files = {"per_class.csv", "confusion_matrix.png", "mistakes.png", "mistakes.csv", "calibration.png"}
    assert set(os.listdir(json_file.parent / "evaluation" / "val")) == files
    mistakes = (json_file.parent / "evaluation" / "val" / "mistakes.csv").read_text().splitlines()[1:]
    known = {row["id"] for row in datasets.read_manifest(dataset, split="val")}
    assert len(mistakes) == round((1 - scores["accuracy"]) * scores["count"])
    assert {line.split(",")[0] for line in mistakes} <= known  # every mistake can be found in the manifest
    client = client_for(mlflow_server)
    run = client.get_run(result["run_id"])
    assert run.data.metrics["val_macro_f1"] == pytest.approx(scores["macro_f1"])
    assert run.data.metrics["val_ece"] == pytest.approx(scores["ece"])
    assert client.get_metric_history(result["run_id"], "val_ece")[0].timestamp > 1e12  # not 1970
    assert {a.path for a in client.list_artifacts(result["run_id"], "evaluation/val")} == \
        {f"evaluation/val/{name}" for name in files}

    evaluated = foodpipe("evaluate", "--model", result["model_uri"], "--data", dataset, env=env)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scores = last_json(evaluated.stdout)
    assert scores["count"] == metadata["splits"]["test"]["count"]
    assert client.get_run(result["run_id"]).data.metrics["test_accuracy"] == pytest.approx(scores["accuracy"])
    inputs = sorted((used.dataset.name, used.dataset.digest, [tag.value for tag in used.tags])
                    for used in client.get_run(result["run_id"]).inputs.dataset_inputs)
    name, digest = os.path.basename(dataset), run.data.params["dataset_metadata_sha256"][:32]
    assert inputs == [(name, digest, ["training"]), (f"{name}/test", digest, ["evaluation"]),
                      (f"{name}/val", digest, ["evaluation"])]  # evaluate logs the dataset and split it read
    (model,) = client.search_logged_models([client.get_run(result["run_id"]).info.experiment_id],
                                           filter_string="name = 'model'")
    linked = {metric.key for metric in client.get_logged_model(model.model_id).metrics}
    assert {"val_macro_f1", "test_accuracy"} <= linked  # evaluate's scores are the model's too

    # A worse finished run and a better unfinished one: select must pick the trained run.
    experiment = client.get_experiment_by_name("smoke").experiment_id
    worse = client.create_run(experiment).info.run_id
    client.log_metric(worse, "val_accuracy", result["val_accuracy"] - 0.5)
    trained_loss = client.get_run(result["run_id"]).data.metrics["val_loss"]
    client.log_metric(worse, "val_loss", trained_loss / 2)  # worse by accuracy, better by loss
    client.set_terminated(worse)
    unfinished = client.create_run(experiment).info.run_id
    client.log_metric(unfinished, "val_accuracy", 2.0)
    client.log_metric(unfinished, "val_loss", 0.0)
    selected = foodpipe("select", "--experiment", "smoke", "--register", "food-smoke", env=env)
    assert selected.returncode == 0, selected.stderr[-2000:]
    best = last_json(selected.stdout)
    assert best["run_id"] == result["run_id"] and best["registered"]["model_uri"] == "models:/food-smoke/1"
    assert best["registered"]["alias_uri"] == "models:/food-smoke@champion"
    assert client.get_model_version_by_alias("food-smoke", "champion").version == "1"
    table = selected.stdout.strip().splitlines()[:-1]
    assert table[0].split() == ["run_id", "run_name", "model", "val_accuracy"]
    assert [line.split()[0] for line in table[1:]] == [result["run_id"], worse]  # compared, best first
    by_loss = foodpipe("select", "--experiment", "smoke", "--metric", "val_loss", env=env)
    assert by_loss.returncode == 0 and last_json(by_loss.stdout)["run_id"] == worse  # the lowest loss wins
    missing = foodpipe("select", "--experiment", "smoke", "--metric", "no_such_metric", env=env)
    assert missing.returncode == 2 and "no finished run with a no_such_metric" in missing.stderr

    classes = metadata["classes"]
    accepted = datasets.read_manifest(dataset)  # images the job accepted (raw_dataset has broken ones too)
    images = [next(row["uri"] for row in accepted if row["class_name"] == name) for name in classes[:2]]
    predicted = foodpipe("predict", "--model", "models:/food-smoke@champion", "--top-k", "2",
                         "--json", str(tmp_path / "predicted.json"), *images, env=env)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    rows = last_json(predicted.stdout)
    assert json.loads((tmp_path / "predicted.json").read_text()) == rows
    assert [row["image"] for row in rows] == images
    for row in rows:
        probabilities = [p["probability"] for p in row["predictions"]]
        assert len(probabilities) == 2 and probabilities[0] >= probabilities[1] and sum(probabilities) <= 1 + 1e-6
        assert {p["class"] for p in row["predictions"]} <= set(classes)
    assert f"{images[0]}: " in predicted.stdout


def test_evaluate_runs_on_a_held_out_set_and_names_classes_that_differ(trained, raw_dataset, mlflow_server, tmp_path):
    """A held-out set (``--split 0,0,1``: no train split, no statistics) is evaluated with the
    model's own scaling; a dataset of other classes is refused with one line naming them."""
    model_uri = trained[0]["model_uri"]
    held = str(tmp_path / "held")
    preprocess.run(["--input", raw_dataset, "--output", held, "--split", "0,0,1"], progress=False)
    evaluated = foodpipe("evaluate", "--model", model_uri, "--data", held, "--mlflow-uri", mlflow_server)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert last_json(evaluated.stdout)["count"] == 48 == datasets.load_metadata(held)["splits"]["test"]["count"]

    classes = datasets.load_metadata(held)["classes"]
    (tmp_path / "two.txt").write_text("\n".join(classes[:2]))
    other = str(tmp_path / "other")
    preprocess.run(["--input", raw_dataset, "--output", other, "--classes-file", str(tmp_path / "two.txt")],
                   progress=False)
    refused = foodpipe("evaluate", "--model", model_uri, "--data", other, "--mlflow-uri", mlflow_server)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-2000:]
    assert f"differ from the model's: only in the model: {classes[2]}" in refused.stderr


def test_serving_model_on_raw_bytes_matches_eval_pipeline_and_model(dataset, tmp_path):
    metadata = datasets.load_metadata(dataset)
    config = InputConfig(image_size=40, batch_size=8, cycle_length=1)
    classifier = models.build("resnet", len(metadata["classes"]), 40, num_blocks=2, filters=4, dense_units=8)
    serving_model = serving.build(classifier, config.framing, config.eval_crop_fraction, metadata["classes"])

    images, _ = zip(*pipeline.eval_dataset(dataset, "val", config))
    expected = classifier.predict(np.concatenate(images), verbose=0)
    paths = pipeline.shard_paths(dataset, "val")
    encoded = [pipeline.parse(record)[0].numpy() for record in tf.data.TFRecordDataset(paths)]
    served = serving_model(tf.constant(encoded)).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-4)

    serving_model.save(tmp_path / "serving.keras")
    import keras

    reloaded = keras.saving.load_model(tmp_path / "serving.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded(tf.constant(encoded)).numpy(), expected, atol=1e-4)
    serving.export_saved_model(reloaded, str(tmp_path / "saved_model"))
    exported = tf.saved_model.load(str(tmp_path / "saved_model"))
    np.testing.assert_allclose(exported.serving_default(image_bytes=tf.constant(encoded))["probabilities"].numpy(),
                               expected, atol=1e-4)
    # serve_images: decoded uint8 pixels of any size, framed and scaled inside the model.
    preprocess_layer, classifier_part = serving.parts(reloaded)
    sizes = set()
    for image in (tf.io.decode_jpeg(e)[tf.newaxis] for e in encoded[:4]):
        sizes.add(tuple(image.shape[1:3]))
        served = exported.serve_images(images=image)["probabilities"].numpy()
        np.testing.assert_allclose(served, classifier_part(preprocess_layer.preprocess_pixels(image)).numpy(), atol=1e-5)
    assert len(sizes) > 1


def test_foodpipe_loader_refuses_a_model_that_would_run_code(tmp_path):
    """Keras safe mode in foodpipe's own loader (evaluate, predict): a Lambda layer's Python code is
    refused, from a .keras file and from an MLflow model folder alike."""
    import keras
    import mlflow

    from trainer import loading

    image = keras.Input((4,))
    unsafe = keras.Model(image, keras.layers.Lambda(lambda x: x * 2)(image))
    unsafe.save(tmp_path / "unsafe.keras")
    mlflow.keras.save_model(unsafe, str(tmp_path / "unsafe-mlflow"))
    for model_uri in (str(tmp_path / "unsafe.keras"), str(tmp_path / "unsafe-mlflow")):
        with pytest.raises(FoodpipeError, match="arbitrary code execution"):
            loading.load_model(model_uri)


@pytest.fixture(scope="module")
def nine_val_images(tmp_path_factory):
    """The issue's data set: 3 classes x 15, whose val split holds 9 images."""
    from foodpipe.tools import synth

    raw, output = (str(tmp_path_factory.mktemp(name)) for name in ("raw9", "data9"))
    synth.generate(synth.SynthConfig(raw, classes=3, per_class=15))
    preprocess.run(["--input", raw, "--output", output])
    assert datasets.load_metadata(output)["splits"]["val"]["count"] == 9
    return output


@pytest.mark.slow
@pytest.mark.parametrize("batch_size,last_per_replica", [(8, (1, 0)), (16, (8, 1))])
def test_mirrored_strategy_any_val_count_one_or_zero_images_for_a_replica(nine_val_images, tmp_path, batch_size,
                                                                         last_per_replica):
    """Two replicas, 9 val images: the last global batch leaves a replica 1 or 0 images. Validation
    must still be exact: the same loss and accuracy as ``evaluate``'s single-device pass over the split."""
    assert (min(9 % batch_size, batch_size // 2), max(0, 9 % batch_size - batch_size // 2)) == last_per_replica
    mlruns = str(tmp_path / "mlruns")
    result = train(nine_val_images, "--epochs", "1", "--batch-size", str(batch_size), "--cpu-replicas", "2",
                   "--keep", "last", "--mlflow-uri", mlruns, "--quiet",
                   env={**os.environ, "FOODPIPE_PROGRESS_SECONDS": "0"})
    assert " - step " not in result.stdout  # --quiet: no progress lines
    assert "MirroredStrategy with 2 replica(s)" in result.stdout
    epoch_line = epoch_lines(result.stdout)[0]
    distributed = {part.split(": ")[0]: float(part.split(": ")[1]) for part in epoch_line.split(" - ")[2:]}
    assert distributed["val_accuracy"] == pytest.approx(last_json(result.stdout)["val_accuracy"], abs=1e-4)
    evaluated = foodpipe("evaluate", "--model", last_json(result.stdout)["model_uri"], "--data", nine_val_images,
                         "--split", "val", "--mlflow-uri", mlruns)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    single = last_json(evaluated.stdout)
    assert single["count"] == 9
    assert distributed["val_accuracy"] == pytest.approx(single["accuracy"], abs=1e-4)
    assert distributed["val_loss"] == pytest.approx(single["loss"], rel=1e-3)


@pytest.mark.slow
def test_mixed_precision_and_xla_switches_and_step_progress(dataset, tmp_path):
    result = train(dataset, "--epochs", "1", "--mixed-precision", "--jit-compile", "--mlflow-uri", str(tmp_path / "m"),
                   env={**os.environ, "FOODPIPE_PROGRESS_SECONDS": "0"})  # a progress line after every step
    steps = math.ceil(datasets.load_metadata(dataset)["splits"]["train"]["count"] / 8)
    progress = [line for line in result.stdout.splitlines() if line.startswith("Epoch 1/1 - step ")]
    assert [line.split(" - ")[1] for line in progress] == [f"step {n}/{steps}" for n in range(1, steps + 1)]
    assert all(line.split(" - ")[2].endswith(" img/s") and " - ETA " in line for line in progress)
    assert "Local rendezvous" not in result.stderr  # TensorFlow's end-of-dataset notice is filtered
    epoch_line = epoch_lines(result.stdout)[0]
    losses = [float(part.split(": ")[1]) for part in epoch_line.split(" - ") if part.startswith(("loss", "val_loss"))]
    assert len(losses) == 2 and all(np.isfinite(losses))
    run = client_for(f"sqlite:///{tmp_path}/m/mlflow.db").get_run(last_json(result.stdout)["run_id"])
    assert run.data.params["mixed_precision"] == "True" and run.data.params["jit_compile"] == "True"


@pytest.mark.slow
def test_multi_worker_training_one_run_same_weights(dataset, mlflow_server, tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs, logs = [], [(tmp_path / f"out{i}.txt", tmp_path / f"err{i}.txt") for i in range(2)]
    for index, (out, err) in enumerate(logs):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        # Files, not pipes: the workers wait on each other, so a full pipe of either would stop both.
        with open(out, "w") as stdout, open(err, "w") as stderr:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "foodpipe", "train", "--data", dataset, *TINY, "--epochs", "2",
                 "--mlflow-uri", mlflow_server, "--experiment", "multiworker"],
                stdout=stdout, stderr=stderr, text=True, env=env, cwd=REPO))
    for proc in procs:
        proc.wait(timeout=600)
    outputs = [(out.read_text(), err.read_text()) for out, err in logs]
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
        assert "MultiWorkerMirroredStrategy with 2 replica(s)" in stdout
    chief, worker = (last_json(stdout) for stdout, _ in outputs)
    assert chief["weights_sha256"] == worker["weights_sha256"]
    assert chief["run_id"] and worker["run_id"] is None and worker["model_uri"] is None
    client = client_for(mlflow_server)
    experiment = client.get_experiment_by_name("multiworker").experiment_id
    assert [run.info.run_id for run in client.search_runs([experiment])] == [chief["run_id"]]


def metric_history(client, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


@pytest.fixture(scope="module")
def uninterrupted_six_epochs(dataset, mlflow_server) -> dict:
    """What the SIGKILL tests' resumed runs are compared with: one run for both stores (a run that is
    not interrupted reads no checkpoint)."""
    return last_json(train(dataset, "--epochs", "6", "--experiment", "resume-uninterrupted",
                           "--mlflow-uri", mlflow_server).stdout)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_training_killed_with_sigkill_resumes_exactly(where, dataset, tmp_path, request, mlflow_server,
                                                      uninterrupted_six_epochs):
    """SIGKILL at a known point (epoch 3's metrics held unanswered by the tracking server's proxy:
    epoch 2 is committed, epoch 3 is not), resume, and compare with an uninterrupted run."""
    if where == "s3":
        env, client = request.getfixturevalue("s3_env"), request.getfixturevalue("s3_client")
        client.create_bucket(Bucket="checkpoints")
        checkpoints = "s3://checkpoints/resume-test"

        def stored_files():
            return {o["Key"].rsplit("/", 1)[-1] for o in client.list_objects_v2(
                Bucket="checkpoints", Prefix="resume-test/").get("Contents", [])}

        def read_state():
            try:
                return json.loads(client.get_object(Bucket="checkpoints", Key="resume-test/state.json")["Body"].read())
            except client.exceptions.NoSuchKey:
                return None
    else:
        env, checkpoints = None, str(tmp_path / "ckpt")

        def stored_files():
            return set(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else set()

        def read_state():
            path = os.path.join(checkpoints, "state.json")
            return json.load(open(path)) if os.path.exists(path) else None

    proxy = TcpProxy(urlparse(mlflow_server).port)
    proxy.hold_on(rb"POST /api/2.0/mlflow/runs/log-batch", nth=4).start()  # params+tags, epochs 1, 2, 3
    args = ["train", "--data", dataset, *TINY, "--epochs", "6", "--experiment", f"resume-{where}"]
    proc = subprocess.Popen([sys.executable, "-m", "foodpipe", *args, "--checkpoint-dir", checkpoints,
                             "--mlflow-uri", proxy.url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, start_new_session=True, env=env)
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    try:
        assert proxy.cut.wait(timeout=600), "the trainer never logged epoch 3"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        state = read_state()
        assert state["epoch"] == 2 and 1 <= state["best_epoch"] <= 2
        assert stored_files() == {"state.json", state["weights"], state["best_weights"]}

        resumed = foodpipe(*args, "--checkpoint-dir", checkpoints, "--mlflow-uri", proxy.url, env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    finally:
        proxy.stop()
    assert "Resumed from epoch 2" in resumed.stdout and "Epoch 1/6" not in resumed.stdout
    result = last_json(resumed.stdout)
    assert result["run_id"] == state["extra"]["run_id"]
    uninterrupted = uninterrupted_six_epochs
    tracking = client_for(mlflow_server)
    interrupted_lr, straight_lr = (metric_history(tracking, r["run_id"], "lr") for r in (result, uninterrupted))
    assert sorted(interrupted_lr) == list(range(1, 7)) and interrupted_lr == pytest.approx(straight_lr, rel=1e-6)
    assert result["steps"] == uninterrupted["steps"] == 6 * math.ceil(
        datasets.load_metadata(dataset)["splits"]["train"]["count"] / 8)
    # The best epoch is looked for over all six epochs, those before the kill included.
    val = metric_history(tracking, result["run_id"], "val_accuracy")
    best_epoch = max(range(1, 7), key=lambda epoch: (val[epoch], -epoch))
    assert result["kept_epoch"] == best_epoch and result["val_accuracy"] == pytest.approx(val[best_epoch], abs=1e-6)
    assert read_state() is None and stored_files() == set()  # a finished run leaves no checkpoint behind


def test_checkpoint_restores_the_best_epoch_and_the_plateau_counters(tmp_path):
    import keras

    from trainer.checkpoint import ResumableCheckpoint
    from trainer.train import KeepBest

    made = []  # each checkpoint's scratch folder, removed at the end (this process holds their locks)

    def run_state():
        model = models.build("resnet", 3, 32, num_blocks=1, filters=2, dense_units=4)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.optimizer.build(model.trainable_variables)
        best, plateau = KeepBest(), keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=5)
        made.append(ResumableCheckpoint(str(tmp_path / "ckpt"), best, plateau))
        for callback in (best, plateau, made[-1]):
            callback.set_model(model)
        return model, best, plateau, made[-1]

    model, best, plateau, checkpoint = run_state()
    plateau.on_train_begin()
    weights = []
    for epoch, (loss, val_accuracy) in enumerate([(1.0, 0.5), (0.9, 0.8), (0.95, 0.6)]):
        for variable in model.trainable_variables:
            variable.assign(variable + 1.0)  # each epoch's weights differ
        weights.append(model.get_weights())
        logs = {"loss": loss, "val_accuracy": val_accuracy}
        for callback in (best, plateau, checkpoint):
            callback.on_epoch_end(epoch, logs)
    assert (best.epoch, plateau.wait, plateau.best) == (2, 1, 0.9)

    model, best, plateau, checkpoint = run_state()
    state = checkpoint.restore(model)
    for callback in (plateau, checkpoint):  # the loop's order: the plateau resets itself, then is restored
        callback.on_train_begin()
    assert state["epoch"] == 3 and (best.epoch, best.score) == (2, 0.8) and (plateau.wait, plateau.best) == (1, 0.9)
    for restored, saved in zip(best.weights, weights[1]):
        np.testing.assert_array_equal(restored, saved)
    for current, saved in zip(model.get_weights(), weights[2]):
        np.testing.assert_array_equal(current, saved)
    checkpoint.clear()
    assert os.listdir(tmp_path / "ckpt") == [] and not os.path.exists(checkpoint._scratch)

    # --keep last: the best epoch is still tracked (its logs), but no weights are copied or checkpointed.
    model, _, plateau, _ = run_state()
    best = KeepBest(keep_weights=False)
    made.append(ResumableCheckpoint(str(tmp_path / "last"), best, plateau))
    for callback in (best, made[-1]):
        callback.set_model(model)
        callback.on_epoch_end(0, {"loss": 1.0, "val_accuracy": 0.5})
    assert (best.epoch, best.weights) == (1, None)
    assert sorted(os.listdir(tmp_path / "last")) == ["epoch-00001.weights.h5", "state.json"]
    for checkpoint in made:
        scratch.remove(checkpoint._scratch)


@pytest.mark.slow
def test_tracking_server_outage_mid_run_does_not_stop_training(dataset, tmp_path):
    """The server goes away at epoch 2's metrics; the trainer's next call (epoch 3's metrics) is
    held while the server is SIGKILLed and restarted on its store, then hung up on; epoch 4's
    metrics find it back (the queued ones arrive); it goes away for good at the first artifact
    upload (a warning names everything not logged). Every step waits on an event, none on time."""
    root = str(tmp_path / "server")
    server, uri = start_mlflow_server(root)
    proxy = TcpProxy(urlparse(uri).port)  # the server keeps its store; the trainer sees the outages
    proxy.cut_on(rb"POST /api/2.0/mlflow/runs/log-batch", nth=3).start()  # params+tags, epoch 1, epoch 2
    args = [sys.executable, "-m", "foodpipe", "train", "--data", dataset, *TINY, "--epochs", "5",
            "--mlflow-uri", proxy.url]
    log_path = tmp_path / "stderr.txt"  # a file: a second reader of a stderr pipe would steal lines
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=REPO)
    try:
        assert proxy.cut.wait(timeout=600), log_path.read_text()[-3000:]
        proxy.hold_on(rb"POST /api/2.0/mlflow/").start()  # up again, holding the trainer's next call
        assert proxy.cut.wait(timeout=600), log_path.read_text()[-3000:]
        os.killpg(server.pid, signal.SIGKILL)  # the server dies too; its store stays
        server.wait()
        server, _ = start_mlflow_server(root, port=urlparse(uri).port)
        proxy.cut_on(rb"PUT /api/2.0/mlflow-artifacts/artifacts/")  # back, until the first artifact
        proxy.release()
        stdout = proc.communicate(timeout=600)[0]
        stderr = log_path.read_text().splitlines()
        assert proc.returncode == 0, "\n".join(stderr)[-3000:]
        run_id = last_json(stdout)["run_id"]
        assert last_json(stdout)["epochs"] == 5
        client = client_for(uri)
        # Every epoch's metrics are there: those queued in the outage arrived when the server came back.
        assert sorted(m.step for m in client.get_metric_history(run_id, "loss"))[:5] == [1, 2, 3, 4, 5]
        assert client.get_run(run_id).info.status == "RUNNING"  # its end status was among the lost records
    finally:
        proxy.stop()
        stop_process(server)
    said = "\n".join(line for line in stderr if "MLflow at" in line)
    assert proxy.cut.is_set() and "training goes on" in said and "is back: logging" in said, said
    lost = next((line for line in stderr if "not logged to run" in line), said)
    assert "plots/training_curves.png" in lost and "the model" in lost and "end status" in lost


@pytest.mark.parametrize("command,message", [
    (["train", "--data", "/no/such/dataset", "--mlflow-uri", "UNUSED"], "dataset incomplete: no metadata.json"),
    (["train", "--data", "DATA", "--model", "vgg"], "unknown model 'vgg'"),
    (["train", "--data", "DATA", "--mlflow-uri", "http://127.0.0.1:PORT"], "is unreachable"),
    (["train", "--data", "DATA", "--mlflow-uri", "A_FILE"], "cannot make the local MLflow store at A_FILE: a file is"),
    (["train", "--data", "DATA", *TINY, "--checkpoint-dir", "A_FILE/ckpt"], "cannot make the folder at A_FILE/ckpt"),
    (["evaluate", "--model", "runs:/0123456789abcdef/model", "--data", "DATA", "--mlflow-uri", "SERVER"],
     "cannot load model runs:/"),
    (["evaluate", "--model", "runs:/0123456789abcdef/model", "--data", "DATA"], "no MLflow store at"),
    (["evaluate", "--model", "/no/such/model", "--data", "DATA"], "does not exist"),
    (["predict", "--model", "/no/such/model", "NOT_AN_IMAGE"], "not an image"),
    (["predict", "--model", "/no/such/model", "/no/such/photo.jpg"], "/no/such/photo.jpg does not exist"),
], ids=["no-dataset", "unknown-model", "tracking-unreachable", "store-blocked", "checkpoint-dir-blocked",
        "no-such-run", "no-store", "no-such-path", "not-an-image", "no-such-image"])
def test_bad_input_is_one_clear_line(command, message, dataset, tmp_path, mlflow_server):
    not_an_image, a_file = tmp_path / "photo.jpg", tmp_path / "a-file"
    not_an_image.write_text("plain text, not a JPEG\n")
    a_file.write_text("a file where a folder would be made\n")
    replace = {"DATA": dataset, "UNUSED": str(tmp_path / "mlruns"), "NOT_AN_IMAGE": str(not_an_image),
               "SERVER": mlflow_server}
    message = message.replace("A_FILE", str(a_file))
    argv = [replace.get(arg, arg).replace("PORT", str(free_port())).replace("A_FILE", str(a_file)) for arg in command]
    result = foodpipe(*argv, env={**os.environ, "MLFLOW_TRACKING_URI": str(tmp_path / "mlruns")})
    assert result.returncode == 2
    said = result.stderr.strip()  # one line, and nothing made before it (MLflow would say it made a store)
    assert said.startswith("foodpipe: error:") and message in said and "\n" not in said, result.stderr[-2000:]
    assert "Epoch 1/" not in result.stdout


def test_a_corrupt_train_shard_stops_training_with_its_name(dataset, tmp_path):
    broken = str(tmp_path / "broken")
    shutil.copytree(dataset, broken)
    victim = os.path.join(broken, datasets.load_metadata(broken)["splits"]["train"]["shards"][0])
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(victim, "wb").write(bytes(data))
    result = foodpipe("train", "--data", broken, *TINY, "--epochs", "1", "--mlflow-uri", f"sqlite:///{tmp_path}/m.db")
    assert result.returncode == 3, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("foodpipe: error: corrupt TFRecord shard(s)") and victim in last, result.stderr[-2000:]


def test_recipe_switches_from_a_config_file_log_their_params_config_yaml_reruns_and_flip_tta_is_apart(dataset, tmp_path):
    """Every regularisation switch at once, through ``foodpipe train --config`` with a flag that wins
    over the file, ``--deterministic``; the run's logged ``config.yaml`` reruns it to the same
    weights and metrics; then ``evaluate --tta flip``."""
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    recipe = {"weight_decay": "0.05", "label_smoothing": "0.1", "mixup": "0.2", "cutmix": "1.0", "ema": "0.9",
              "auto_augment": "trivial"}
    settings = tmp_path / "settings.yaml"
    tiny = dict(zip((flag[2:].replace("-", "_") for flag in TINY[::2]), TINY[1::2]))
    settings.write_text("".join(f"{key}: {value}\n" for key, value in {**tiny, **recipe}.items()) +
                        f"data: {dataset}\nepochs: 1\nflip: false\nrun_name: from-file\ndeterministic: true\n")
    first = foodpipe("train", "--config", str(settings), "--epochs", "2", "--mlflow-uri", tracking)
    assert first.returncode == 0, first.stderr[-3000:]
    result = last_json(first.stdout)
    client = client_for(tracking)
    run = client.get_run(result["run_id"])
    params = run.data.params
    assert {key: params[key] for key in recipe} == recipe
    assert (params["epochs"], params["flip"], params["image_size"]) == ("2", "False", "32")
    assert run.info.run_name == "from-file"
    assert len(run.data.metrics) and all(np.isfinite(list(run.data.metrics.values())))
    logged = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    again = foodpipe("train", "--config", logged, "--mlflow-uri", tracking)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = client.get_run(last_json(again.stdout)["run_id"])
    assert rerun.data.params == params and rerun.info.run_name == "from-file" and params["deterministic"] == "True"
    # --deterministic: the same command gives the same weights and metrics (every switch above on).
    assert last_json(again.stdout)["weights_sha256"] == result["weights_sha256"]
    assert rerun.data.metrics == run.data.metrics

    flipped = foodpipe("evaluate", "--model", result["model_uri"], "--data", dataset, "--split", "val", "--tta", "flip",
                       "--mlflow-uri", tracking)
    assert flipped.returncode == 0, flipped.stderr[-3000:]
    scores = last_json(flipped.stdout)
    assert scores["tta"] == "flip"
    metrics = client.get_run(result["run_id"]).data.metrics
    assert metrics["val_tta_flip_accuracy"] == pytest.approx(scores["accuracy"]) and "val_count" not in metrics
    bad = foodpipe("evaluate", "--model", result["model_uri"], "--data", dataset, "--tta", "five-crop",
                   "--mlflow-uri", tracking)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == \
        "foodpipe: error: unknown tta 'five-crop': choose one of none, flip", bad.stderr[-2000:]


def test_a_bad_config_file_is_one_line_naming_it(dataset, tmp_path):
    settings = tmp_path / "settings.yaml"
    for text, message in [("- a list\n", f"config file {settings} must map setting names to values, e.g. 'image_size: 64'"),
                          (f"data: {dataset}\nimage_sizee: 32\n", f"config file {settings}: image_sizee is not a setting of train"),
                          ("data: [1, 2]\n", f"config file {settings}: data must be a single value, got [1, 2]")]:
        settings.write_text(text)
        bad = foodpipe("train", "--config", str(settings), "--mlflow-uri", f"sqlite:///{tmp_path}/m.db")
        assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == f"foodpipe: error: {message}", \
            bad.stderr[-2000:]
    missing = foodpipe("train", "--config", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "config file" in missing.stderr and "does not exist" in missing.stderr


def test_config_validation_and_params():
    with pytest.raises(FoodpipeError, match="unknown optimizer 'rmsprop'"):
        train_config(data="d", optimizer="rmsprop")
    with pytest.raises(FoodpipeError, match="lr_factor"):
        train_config(data="d", lr_factor=1.5)
    for bad, message in [({"lr_schedule": "step"}, "unknown lr_schedule 'step'"), ({"keep": "all"}, "unknown keep"),
                         ({"framing": "zoom"}, "unknown framing 'zoom'"), ({"crop_area_min": 0}, "crop_area"),
                         ({"crop_aspect_max": 0.5}, "crop_aspect_max"), ({"warmup_epochs": -1}, "warmup_epochs"),
                         ({"augment_probability": 2}, "augment_probability")]:
        with pytest.raises(FoodpipeError, match=message):
            train_config(data="d", **bad)
    assert train_config(data="d", epochs=1, warmup_epochs=3).warmup == 0
    inputs = train_config(data="d", rotate_degrees=0, crop_area_min=0.3, crop_aspect_max=2, framing="crop",
                         eval_crop_fraction=0.9).input_config()
    assert (inputs.rotate_degrees, inputs.crop_area, inputs.crop_aspect, inputs.framing, inputs.eval_crop_fraction) \
        == (0, (0.3, 1.0), (0.5, 2), "crop", 0.9)
    assert not train_config(data="d", augment=False).input_config().any_augmentation
    params = train_config(data="d", model="nasnet", mlflow_uri="http://user:secret@host").params()
    assert params["weights"] == "imagenet" and "num_blocks" not in params and "mlflow_uri" not in params


@pytest.mark.parametrize("tf_config,size,chief", [
    (None, 1, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, 2, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, 2, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, 2, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, 2, True),
])
def test_chief_and_cluster_size_from_tf_config(monkeypatch, tf_config, size, chief):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert strategy.cluster_size() == size and strategy.is_chief() == chief


def test_bad_tf_config_is_an_error(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(FoodpipeError, match="TF_CONFIG is not valid JSON"):
        strategy.cluster_size()
