"""The logged model through MLflow's own interfaces: ``mlflow.pyfunc`` in a process that cannot
import foodpipe, a real ``mlflow models serve`` answering ``POST /invocations``, and a registry
alias resolving. The model is logged as the trainer logs it (``MlflowWriter.log_model``) to a local
tracking store."""

import base64
import io
import json
import os
import subprocess
import sys

import pytest
import requests
import tensorflow as tf
from PIL import Image

import models
from foodpipe import datasets
from tests.conftest import foodpipe, free_port, start_process, stop_process
from tests.test_trainer import last_json
from tfdata import pipeline
from trainer import serving, tracking

# Run in a fresh interpreter: foodpipe's packages cannot be imported at all there.
PYFUNC_SCRIPT = r"""
import importlib.abc, json, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("foodpipe", "trainer", "tfdata", "models", "beam_pipelines"):
            raise ImportError(f"{name} may not be imported here")

sys.meta_path.insert(0, Refuse())
import mlflow, pandas as pd
images = [bytes.fromhex(line) for line in sys.stdin.read().split()]
model = mlflow.pyfunc.load_model(sys.argv[1])
print(json.dumps({"schema": str(model.metadata.get_input_schema()),
                  "rows": model.predict(pd.DataFrame({"image_bytes": images})).to_dict(orient="records")}))
"""


@pytest.fixture(scope="module")
def logged(trainer_dataset, tmp_path_factory):
    """``(tracking URI, model URI, serving model, val JPEGs)``: a small model logged as the trainer does."""
    metadata = datasets.load_metadata(trainer_dataset)
    classifier = models.build("resnet", len(metadata["classes"]), 32, num_blocks=1, filters=4, dense_units=8,
                              pixel_stats=(metadata["stats"]["mean"], metadata["stats"]["std"]))
    serving_model = serving.build(classifier, "squash", 0.875, metadata["classes"])
    records = tf.data.TFRecordDataset(pipeline.shard_paths(trainer_dataset, "val"))
    jpegs = [pipeline.parse(record)[0].numpy() for record in records]
    store = tracking.local_store_uri(str(tmp_path_factory.mktemp("store")))
    writer = tracking.MlflowWriter(store, "served")
    writer.start({"model": "resnet"}, {})
    model_uri = writer.log_model(serving_model, jpegs[0], {"model": "resnet"}, {"val_accuracy": 0.5},
                                 datasets.load(trainer_dataset), step=1)
    writer.log_metrics({"val_accuracy": 0.5}, step=1)
    assert writer.finish() == []
    return store, model_uri, serving_model, jpegs


def test_the_runs_model_is_an_mlflow_logged_model_with_its_metrics_on_its_dataset(logged, trainer_dataset):
    """MLflow 3 knows the model (the UI's Logged models): found by ``search_logged_models``, READY,
    of the run, its params and its metric on the dataset's digest; ``runs:/RUN/model`` names it."""
    import mlflow

    store, model_uri, _, _ = logged
    client = mlflow.MlflowClient(store)
    run_id = model_uri.split("/")[1]
    found = client.search_logged_models([client.get_run(run_id).info.experiment_id])
    assert [(model.name, model.source_run_id, model.status.name) for model in found] == [("model", run_id, "READY")]
    model = found[0]
    assert model.params == {"model": "resnet"}
    digest = datasets.load(trainer_dataset).sha256[:32]
    assert [(metric.key, metric.value, metric.dataset_digest) for metric in model.metrics] == \
        [("val_accuracy", 0.5, digest)]
    assert tracking.logged_model_id(client, model_uri, run_id) == model.model_id
    assert [item.path for item in client.list_artifacts(run_id, "model")]  # runs:/RUN/model resolves to it


def expected_rows(serving_model, images: list[bytes]) -> list[dict]:
    class_names = serving.parts(serving_model)[0].class_names
    probabilities = serving_model(tf.constant(images)).numpy()
    return [{"class": class_names[row.argmax()], "probability": float(row.max()),
             **{f"probability_{name}": float(p) for name, p in zip(class_names, row)}} for row in probabilities]


def assert_rows_match(rows: list[dict], expected: list[dict]) -> None:
    assert [row["class"] for row in rows] == [row["class"] for row in expected]
    for row, want in zip(rows, expected):
        assert set(row) == set(want)
        for key, value in want.items():
            if key != "class":
                assert row[key] == pytest.approx(value, abs=1e-5), key


def png_of(jpeg: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_pyfunc_loads_and_predicts_in_a_process_that_cannot_import_foodpipe(logged):
    store, model_uri, serving_model, jpegs = logged
    images = jpegs[:3] + [png_of(jpegs[0])]
    import mlflow

    model_id = tracking.logged_model_id(mlflow.MlflowClient(store), model_uri, model_uri.split("/")[1])
    result = subprocess.run([sys.executable, "-c", PYFUNC_SCRIPT, f"models:/{model_id}"],
                            input=" ".join(i.hex() for i in images),
                            capture_output=True, text=True, timeout=300, cwd="/",
                            env={**os.environ, "MLFLOW_TRACKING_URI": store})
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["schema"] == "['image_bytes': binary (required)]"
    # A PNG is converted to JPEG as foodpipe predict and the job convert it (quality 95): its class
    # is the JPEG's, its probabilities close.
    assert_rows_match(answer["rows"][:3], expected_rows(serving_model, jpegs[:3]))
    assert answer["rows"][3]["class"] == answer["rows"][0]["class"]


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations_with_the_class(logged):
    store, model_uri, serving_model, jpegs = logged
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store,
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}  # uvicorn
    server, _ = start_process([os.path.join(os.path.dirname(sys.executable), "mlflow"), "models", "serve", "-m",
                               model_uri, "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                              ready=r"Uvicorn running on", env=env)
    try:
        body = {"dataframe_split": {"columns": ["image_bytes"],
                                    "data": [[base64.b64encode(image).decode()] for image in jpegs[:2]]}}
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=120)
        assert answer.status_code == 200, answer.text[:1000]
        assert_rows_match(answer.json()["predictions"], expected_rows(serving_model, jpegs[:2]))
        garbage = {"dataframe_split": {"columns": ["image_bytes"], "data": [[base64.b64encode(b"no image").decode()]]}}
        refused = requests.post(f"http://127.0.0.1:{port}/invocations", json=garbage, timeout=120)
        assert refused.status_code == 400 and "not an image" in refused.text
    finally:
        stop_process(server)


@pytest.mark.slow
def test_select_register_sets_the_alias_that_names_the_model_everywhere(logged, tmp_path):
    store, model_uri, serving_model, jpegs = logged
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    selected = foodpipe("select", "--experiment", "served", "--register", "food-served", "--alias", "production",
                        env=env)
    assert selected.returncode == 0, selected.stderr[-2000:]
    registered = last_json(selected.stdout)["registered"]
    assert registered["alias_uri"] == "models:/food-served@production" and registered["version"] == 1
    import mlflow

    client = mlflow.MlflowClient(store)
    model_id = tracking.logged_model_id(client, model_uri, model_uri.split("/")[1])
    assert client.get_model_version("food-served", "1").source == f"models:/{model_id}"  # the logged model
    image = tmp_path / "photo.jpg"
    image.write_bytes(jpegs[1])
    predicted = foodpipe("predict", "--model", "models:/food-served@production", str(image), env=env)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    expected = expected_rows(serving_model, [jpegs[1]])
    assert last_json(predicted.stdout)[0]["predictions"][0]["class"] == expected[0]["class"]
    result = subprocess.run([sys.executable, "-c", PYFUNC_SCRIPT, "models:/food-served@production"],
                            input=jpegs[1].hex(), capture_output=True, text=True, timeout=300, cwd="/", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_rows_match(json.loads(result.stdout.strip().splitlines()[-1])["rows"], expected)
