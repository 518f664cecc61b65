"""``predict``: class probabilities of images (local files or ``s3://`` objects) from a trained model."""

import numpy as np
import tensorflow as tf

from foodpipe import images as image_checks
from foodpipe import storage
from foodpipe.errors import FoodpipeError
from trainer import serving
from trainer.loading import load_model


def read_image(location: str) -> bytes:
    """An image's bytes as the model takes them (a JPEG; other formats converted), or an error."""
    try:
        data = storage.read(location)
    except Exception as exc:
        raise storage.describe(exc, location, f"reading {location}") from None
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
