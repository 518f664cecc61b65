"""The serving model packaged as one MLflow model (the Keras and pyfunc flavours side by side),
beside ``serving.export_saved_model``, whose SavedModel the pyfunc flavour wraps."""

import os
import tempfile

from foodpipe import images, storage
from trainer import mlflow_pyfunc, serving, tracking


def save_model(serving_model, example_jpeg: bytes, scratch: str) -> str:
    """Save the serving model as one MLflow model in a new folder under the local folder
    ``scratch``; returns the model's folder.

    Two flavours over two copies of the same graph:
    - ``python_function``: ``trainer/mlflow_pyfunc.py`` over the TensorFlow SavedModel in
      ``data/saved_model`` (also what TF Serving loads); its code travels in ``code/``, so
      ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` need no foodpipe installed. Signature:
      a ``binary`` column ``image_bytes`` in; ``class``, ``probability`` and ``probability_<class>`` out.
    - ``keras``: the Keras model (``data/model.keras``), which foodpipe's ``evaluate`` and
      ``predict`` load (safe mode) to reach the classifier and the preprocessing settings.
    """
    import keras
    import mlflow
    import pandas as pd
    import tensorflow as tf
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema


    class_names = serving.parts(serving_model)[0].class_names
    folder = tempfile.mkdtemp(prefix="model-", dir=scratch)
    saved_model = os.path.join(folder, "saved_model")
    serving.export_saved_model(serving_model, saved_model)
    storage.write_json(os.path.join(saved_model, mlflow_pyfunc.CLASSES_FILE), class_names)
    code_paths = [os.path.join(folder, "code", name) for name in ("foodpipe_pyfunc.py", "foodpipe_images.py")]
    for source, copy in zip((mlflow_pyfunc.__file__, images.__file__), code_paths):
        storage.write(copy, storage.read(source))

    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", mlflow_pyfunc.INPUT_COLUMN)]),
        outputs=Schema([ColSpec("string", "class")] +
                       [ColSpec("double", name) for name in mlflow_pyfunc.output_columns(class_names)[1:]]))
    path = os.path.join(folder, tracking.MODEL_ARTIFACT)
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"pandas=={pd.__version__}",
                    f"pillow=={images.Image.__version__}"]
    mlflow.pyfunc.save_model(
        path, loader_module="foodpipe_pyfunc", data_path=saved_model,
        code_paths=code_paths, signature=signature,
        input_example=pd.DataFrame({mlflow_pyfunc.INPUT_COLUMN: [example_jpeg]}), pip_requirements=requirements)

    keras_only = os.path.join(folder, "keras")
    mlflow.keras.save_model(serving_model, keras_only, pip_requirements=requirements)
    keras_file = os.path.join("data", "model.keras")
    storage.write(os.path.join(path, keras_file), storage.read(os.path.join(keras_only, keras_file)))
    model = Model.load(os.path.join(path, "MLmodel"))
    model.add_flavor("keras", **Model.load(os.path.join(keras_only, "MLmodel")).flavors["keras"])
    model.save(os.path.join(path, "MLmodel"))
    return path
