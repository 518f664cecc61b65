"""The logged model as an MLflow ``python_function``: the loader module MLflow runs for
``mlflow.pyfunc.load_model``, ``mlflow models serve`` and every pyfunc-based tool.

It reads the model's TensorFlow SavedModel (``serving_default``: JPEG bytes in, probabilities out;
decode and framing are in the graph, see ``trainer/serving.py``) and the class names beside it. It
needs TensorFlow, Pillow and pandas, and nothing of foodpipe: ``packaging.save_model`` copies this
file into the model's ``code/`` folder as ``foodpipe_pyfunc.py``, with ``foodpipe/images.py`` as
``foodpipe_images.py`` (images in other formats are converted to JPEG as the preprocessing job
and ``foodpipe predict`` convert them). No pickle, no Keras custom objects.

Input: a DataFrame with a column ``image_bytes`` (MLflow type ``binary``; the REST server decodes
base64). Output, one row per image: ``class``, ``probability`` and ``probability_<class>`` for
every class.
"""

import json
import os

import numpy as np
import pandas as pd
import tensorflow as tf

try:
    import foodpipe_images as images  # in a logged model's code/ folder
except ImportError:  # in the repository
    from foodpipe import images

CLASSES_FILE = os.path.join("assets.extra", "foodpipe_classes.json")  # in the SavedModel folder
INPUT_COLUMN = "image_bytes"


def output_columns(class_names: list[str]) -> list[str]:
    return ["class", "probability"] + [f"probability_{name}" for name in class_names]


class FoodpipeModel:
    def __init__(self, saved_model_dir: str):
        self.serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
        with open(os.path.join(saved_model_dir, CLASSES_FILE)) as f:
            self.class_names = json.load(f)

    def predict(self, model_input, params=None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if INPUT_COLUMN not in frame.columns:
            raise ValueError(f"the input needs a column {INPUT_COLUMN!r} of image bytes, got {list(frame.columns)}")
        encoded = []
        for index, data in enumerate(frame[INPUT_COLUMN]):
            try:
                encoded.append(images.stored_bytes(bytes(data)))
            except images.Rejected as exc:
                raise ValueError(f"row {index}: {exc}") from None
        probabilities = self.serve(image_bytes=tf.constant(encoded, tf.string))["probabilities"].numpy() \
            if encoded else np.zeros((0, len(self.class_names)), np.float32)
        best = probabilities.argmax(axis=1)
        rows = [[self.class_names[i], float(p[i]), *map(float, p)] for i, p in zip(best, probabilities)]
        return pd.DataFrame(rows, columns=output_columns(self.class_names))


def _load_pyfunc(data_path: str) -> FoodpipeModel:
    return FoodpipeModel(data_path)
