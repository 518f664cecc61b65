"""The serving model: raw JPEG bytes in, class probabilities out.

It wraps the trained classifier with ``ServingPreprocess``, which runs
``tfdata.pipeline.preprocess_eval_image`` (the function the eval pipeline uses) in the graph, so
training-time evaluation and serving cannot drift apart. The layer also carries what a saved model
needs to be used on its own: image size, crop, the train statistics and the class names.

The same serving graph is exported as a TensorFlow SavedModel with two signatures:
``serving_default`` (JPEG bytes) and ``serve_images`` (uint8 pixel tensors of any size).
"""

import keras
import tensorflow as tf

from tfdata import pipeline

PREPROCESS = "preprocess"


@keras.saving.register_keras_serializable(package="foodpipe")
class ServingPreprocess(keras.layers.Layer):
    """``[batch]`` JPEG strings -> ``[batch, size, size, 3]`` standardized float32 images."""

    def __init__(self, image_size: int, crop_fraction: float, mean, std, class_names, **kwargs):
        super().__init__(**kwargs)
        self.image_size = int(image_size)
        self.crop_fraction = float(crop_fraction)
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.class_names = list(class_names)

    def call(self, encoded):
        size = self.image_size
        return tf.map_fn(
            lambda jpeg: pipeline.preprocess_eval_image(jpeg, size, self.crop_fraction, self.mean, self.std),
            tf.reshape(encoded, [-1]),
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )

    def preprocess_pixels(self, images):
        """The same preprocessing for already-decoded uint8 images ``[batch, height, width, 3]``."""
        window = pipeline.central_crop_window(tf.shape(images)[1:3], self.crop_fraction)
        cropped = images[:, window[0]:window[0] + window[2], window[1]:window[1] + window[3], :]
        resized = tf.image.resize(tf.cast(cropped, tf.float32), [self.image_size, self.image_size])
        return pipeline.standardize(resized, self.mean, self.std)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.image_size, self.image_size, 3)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "crop_fraction": self.crop_fraction,
                "mean": self.mean, "std": self.std, "class_names": self.class_names}


def build(classifier: keras.Model, crop_fraction: float, mean, std, class_names) -> keras.Model:
    """The serving model around ``classifier`` (whose weights it shares)."""
    size = classifier.input_shape[1]
    encoded = keras.Input(shape=(), dtype="string", name="image_bytes")
    images = ServingPreprocess(size, crop_fraction, mean, std, class_names, name=PREPROCESS)(encoded)
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
