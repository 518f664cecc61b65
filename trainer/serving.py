"""The serving model: raw JPEG bytes in, class probabilities out.

It wraps the trained classifier with ``ServingPreprocess``, which runs
``tfdata.pipeline.preprocess_eval_image`` (the function the eval pipeline uses) in the graph, so
training-time evaluation and serving cannot drift apart. The layer also carries what a saved model
needs to be used on its own: image size, framing and the class names; the train statistics are the
classifier's own first layer.

The same serving graph is exported as a TensorFlow SavedModel with two signatures:
``serving_default`` (JPEG bytes) and ``serve_images`` (uint8 pixel tensors of any size).
"""

import keras
import tensorflow as tf

from tfdata import pipeline

PREPROCESS = "preprocess"


@keras.saving.register_keras_serializable(package="foodpipe")
class ServingPreprocess(keras.layers.Layer):
    """``[batch]`` JPEG strings -> ``[batch, size, size, 3]`` uint8 images, framed as in eval."""

    def __init__(self, image_size: int, framing: str, crop_fraction: float, class_names, **kwargs):
        super().__init__(**kwargs)
        self.image_size = int(image_size)
        self.framing = str(framing)
        self.crop_fraction = float(crop_fraction)
        self.class_names = list(class_names)

    def call(self, encoded):
        size = self.image_size
        return tf.map_fn(
            lambda jpeg: pipeline.preprocess_eval_image(jpeg, size, self.framing, self.crop_fraction),
            tf.reshape(encoded, [-1]),
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8),
        )

    def preprocess_pixels(self, images):
        """The same framing for already-decoded uint8 images ``[batch, height, width, 3]``."""
        window = pipeline.eval_window(tf.shape(images)[1:3], self.framing, self.crop_fraction)
        cropped = images[:, window[0]:window[0] + window[2], window[1]:window[1] + window[3], :]
        return pipeline.frame(cropped, self.image_size, self.framing)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.image_size, self.image_size, 3)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "framing": self.framing,
                "crop_fraction": self.crop_fraction, "class_names": self.class_names}


def build(classifier: keras.Model, framing: str, crop_fraction: float, class_names) -> keras.Model:
    """The serving model around ``classifier`` (whose weights it shares)."""
    size = classifier.input_shape[1]
    encoded = keras.Input(shape=(), dtype="string", name="image_bytes")
    images = ServingPreprocess(size, framing, crop_fraction, class_names, name=PREPROCESS)(encoded)
    return keras.Model(encoded, classifier(images), name="foodpipe_serving")


def parts(serving_model: keras.Model) -> tuple[ServingPreprocess, keras.Model]:
    """``(preprocess layer, classifier)`` of a serving model; the classifier takes image tensors."""
    classifier = next(layer for layer in serving_model.layers if isinstance(layer, keras.Model))
    return serving_model.get_layer(PREPROCESS), classifier


def export_saved_model(serving_model: keras.Model, path: str) -> None:
    """A TensorFlow SavedModel (for TF Serving and friends) with a bytes and a pixels signature."""
    preprocess, classifier = parts(serving_model)
    archive = keras.export.ExportArchive()
    archive.track(serving_model)
    archive.add_endpoint(
        "serving_default", lambda image_bytes: {"probabilities": serving_model(image_bytes)},
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.add_endpoint(
        "serve_images", lambda images: {"probabilities": classifier(preprocess.preprocess_pixels(images))},
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.write_out(path, verbose=False)
