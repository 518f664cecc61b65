"""Using trained models: ``evaluate`` on a split, ``select`` the best run, ``predict`` images.

Models are named by ``runs:/RUN/model``, ``models:/NAME/VERSION`` (the registry), an MLflow model
folder (local or ``s3://``) or a ``.keras`` file. They are loaded with Keras' safe mode on: no
Python code is unpickled from the store.
"""

import os
import warnings

import numpy as np
import tensorflow as tf

from beam_pipelines import images as image_checks
from foodpipe import s3, uri
from foodpipe.errors import FoodpipeError
from tfdata import pipeline
from tfdata.config import InputConfig
from trainer import serving, tracking
from trainer.train import predict_split

MLFLOW_SCHEMES = ("runs:/", "models:/")


def load_model(model_uri: str, tracking_uri: str | None = None, client=None):
    """The serving model behind ``model_uri``; a one-line error if there is none. ``client``: an
    already connected MLflow client, for a caller that needs one anyway."""
    import keras

    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    try:
        if model_uri.endswith(".keras") and not model_uri.startswith(MLFLOW_SCHEMES):
            if not os.path.isfile(model_uri):
                raise FoodpipeError(f"model {model_uri} does not exist")
            model = keras.saving.load_model(model_uri, safe_mode=True)
        else:
            if model_uri.startswith(MLFLOW_SCHEMES):
                if client is None:  # loading needs the tracking server set and answering
                    tracking.connect(tracking.chosen_uri(tracking_uri))
            elif uri.is_s3(model_uri):
                settings = s3.S3Settings.from_env()
                if settings.endpoint_url:
                    os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", settings.endpoint_url)
            elif not os.path.isfile(os.path.join(model_uri, "MLmodel")):
                raise FoodpipeError(f"model {model_uri} does not exist (no MLmodel file there)")
            import mlflow

            model = mlflow.keras.load_model(model_uri, load_model_kwargs={"safe_mode": True})
    except FoodpipeError:
        raise
    except Exception as exc:
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise FoodpipeError(f"cannot load model {model_uri}: {reason}") from None
    try:
        serving.parts(model)
    except (ValueError, StopIteration):
        raise FoodpipeError(f"{model_uri} is not a foodpipe serving model (no preprocess layer)") from None
    return model


def run_of(model_uri: str, client) -> str | None:
    """The MLflow run a model URI points into, if any."""
    if model_uri.startswith("runs:/"):
        return model_uri[len("runs:/"):].split("/", 1)[0]
    if model_uri.startswith("models:/"):
        name, _, version = model_uri[len("models:/"):].partition("/")
        if version.isdigit():
            return client.get_model_version(name, version).run_id
    return None


def cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Keras' sparse categorical cross-entropy on probabilities (clipped the same way)."""
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-7, 1 - 1e-7)).mean())


def evaluate(model_uri: str, data_uri: str, split: str = "test", batch_size: int = 64,
             tracking_uri: str | None = None) -> dict:
    client = tracking.connect(tracking.chosen_uri(tracking_uri)) if model_uri.startswith(MLFLOW_SCHEMES) else None
    model = load_model(model_uri, tracking_uri, client)
    preprocess, classifier = serving.parts(model)
    metadata = pipeline.load_metadata(data_uri)
    if metadata["classes"] != preprocess.class_names:
        raise FoodpipeError(f"the classes of {data_uri} differ from the classes the model was trained on")
    config = InputConfig(image_size=preprocess.image_size, batch_size=batch_size, framing=preprocess.framing,
                         eval_crop_fraction=preprocess.crop_fraction)
    dataset = pipeline.make_dataset(data_uri, split, config, training=False, metadata=metadata)
    try:
        labels, probabilities = predict_split(classifier, dataset)
    except tf.errors.DataLossError:
        raise pipeline.explain_data_loss(data_uri, split, metadata) from None
    result = {"accuracy": float((probabilities.argmax(axis=1) == labels).mean()),
              "loss": cross_entropy(labels, probabilities), "count": int(len(labels))}
    if client is not None:
        from mlflow.entities import Metric

        run_id = run_of(model_uri, client)
        if run_id:
            metrics = [Metric(f"{split}_{key}", float(value), 0, 0) for key, value in result.items()]
            client.log_batch(run_id, metrics=metrics)
            result["run_id"] = run_id
    return result


def select(experiment: str, tracking_uri: str | None = None, register: str | None = None) -> dict:
    """The finished run with the highest validation accuracy; optionally registered as ``register``."""
    client = tracking.connect(tracking.chosen_uri(tracking_uri))
    experiment_id = tracking.experiment_id(client, experiment, create=False)
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=["metrics.val_accuracy DESC", "attributes.start_time DESC"], max_results=50)
    runs = [run for run in runs if "val_accuracy" in run.data.metrics]
    if not runs:
        raise FoodpipeError(f"experiment {experiment!r} has no finished run with a val_accuracy")
    best = runs[0]
    result = {"run_id": best.info.run_id, "run_name": best.info.run_name,
              "val_accuracy": best.data.metrics["val_accuracy"],
              "model_uri": f"runs:/{best.info.run_id}/{tracking.MODEL_ARTIFACT}",
              "model": best.data.params.get("model")}
    if register:
        import mlflow

        version = mlflow.register_model(result["model_uri"], register)
        result["registered"] = {"name": register, "version": int(version.version),
                                "model_uri": f"models:/{register}/{version.version}"}
    return result


def read_image(location: str) -> bytes:
    """An image's bytes as the model takes them (a JPEG; other formats converted), or an error."""
    if uri.is_s3(location):
        settings = s3.S3Settings.from_env()
        try:
            data = s3.read_object(location, settings)
        except Exception as exc:
            raise s3.describe_error(exc, settings, f"reading {location}") from None
    else:
        try:
            with open(location, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise FoodpipeError(f"cannot read {location}: {exc.strerror or exc}") from None
    inspection = image_checks.inspect(data)
    if inspection.reason:
        raise FoodpipeError(f"{location}: {inspection.reason}")
    return image_checks.stored_bytes(data)


def predict(model_uri: str, locations: list[str], top_k: int = 1, tracking_uri: str | None = None) -> list[dict]:
    if top_k < 1:
        raise FoodpipeError(f"top_k must be at least 1, got {top_k}")
    encoded = [read_image(location) for location in locations]  # every image checked before the model loads
    model = load_model(model_uri, tracking_uri)
    class_names = serving.parts(model)[0].class_names
    probabilities = np.asarray(model(tf.constant(encoded)))
    results = []
    for location, row in zip(locations, probabilities):
        best = np.argsort(row)[::-1][:top_k]
        results.append({"image": location,
                        "predictions": [{"class": class_names[i], "probability": float(row[i])} for i in best]})
    return results
