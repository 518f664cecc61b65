"""Loading a trained foodpipe model by name.

Models are named by ``runs:/RUN/model``, ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` (the
registry), an MLflow model folder (local or ``s3://``) or a ``.keras`` file. foodpipe loads their
Keras flavour with Keras' safe mode on: no Python code is unpickled from the store. (MLflow's own
tools use the model's pyfunc flavour, see ``trainer/mlflow_pyfunc.py``.)
"""

import os
import warnings

from foodpipe import s3, uri
from foodpipe.errors import FoodpipeError, first_line
from trainer import serving, tracking

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
                    tracking.connect(tracking.chosen_uri(tracking_uri), create=False)
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
        raise FoodpipeError(f"cannot load model {model_uri}: {first_line(exc)}") from None
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
        if "@" in name:  # models:/NAME@ALIAS
            name, _, alias = name.partition("@")
            return client.get_model_version_by_alias(name, alias).run_id
        if version.isdigit():
            return client.get_model_version(name, version).run_id
    return None
