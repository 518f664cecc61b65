"""NASNetMobile as the base, fine-tuned, with the same head as the from-scratch model.

``weights``: ``"imagenet"`` (downloaded by Keras), ``None``, or the path of a local weights file
for machines without internet (Keras' ``NASNet-mobile-no-top.h5``). ``freeze_fraction`` of the
base's layers, counted from the input, are frozen; a frozen BatchNormalization runs in inference
mode (Keras does this for ``trainable = False``), so fine-tuning never disturbs its statistics.

The first layer scales the uint8 pixels: to ``[-1, 1]`` with pretrained weights (what ImageNet's
NASNetMobile was trained on, Keras' ``nasnet.preprocess_input``), with the dataset's ``pixel_stats``
when trained from scratch.
"""

import os

import keras

from models import blocks
from models.config import ModelConfig


def build_nasnet(num_classes: int, image_size: int, weights: str | None = None,
                 freeze_fraction: float = ModelConfig.freeze_fraction, dense_units: int = ModelConfig.dense_units,
                 dropout: float = ModelConfig.dropout, leaky_slope: float = ModelConfig.leaky_slope,
                 pixel_stats: tuple | None = None) -> keras.Model:
    blocks.check_common(num_classes, image_size, dense_units, dropout, leaky_slope, min_image_size=32)
    if not 0 <= freeze_fraction <= 1:
        raise ValueError(f"freeze_fraction must be in [0, 1], got {freeze_fraction!r}")
    local_weights = weights not in (None, "imagenet")
    if local_weights and not os.path.exists(weights):
        raise ValueError(f"weights must be 'imagenet', None or an existing file, got {weights!r}")

    image = blocks.inputs(image_size)
    # Pretrained weights expect the input scaling they were trained with; from scratch, the dataset's.
    scaled = blocks.apply_input_scaling(image, None if weights else pixel_stats)
    base = keras.applications.NASNetMobile(
        include_top=False, weights=None if local_weights else weights, input_tensor=scaled,
        input_shape=(image_size, image_size, 3))
    if local_weights:
        base.load_weights(weights)
    frozen = int(len(base.layers) * freeze_fraction)
    for layer in base.layers[:frozen]:
        layer.trainable = False
    outputs = blocks.apply_classifier_head(base.output, num_classes, dense_units, dropout, leaky_slope)
    return keras.Model(image, outputs, name="nasnet")
