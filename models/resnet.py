"""The seed report's from-scratch CNN: a 7x7 conv stem and max-pool, residual blocks of three
3x3 conv/BatchNorm/LeakyReLU with a 1x1-conv skip (each block after the first halves the
resolution and doubles the filters), global average pooling, a Dense layer with Dropout, softmax.
It takes uint8 pixels: standard scaling with the dataset's statistics is its first layer."""

import keras
from keras import layers

from models import blocks
from models.config import ModelConfig


def build_resnet(num_classes: int, image_size: int, num_blocks: int = ModelConfig.num_blocks,
                 filters: int = ModelConfig.filters, dense_units: int = ModelConfig.dense_units,
                 dropout: float = ModelConfig.dropout, leaky_slope: float = ModelConfig.leaky_slope,
                 bn_momentum: float = ModelConfig.bn_momentum, pixel_stats: tuple | None = None) -> keras.Model:
    """``pixel_stats``: the dataset's ``(mean, std)`` per channel for the first layer (see
    ``blocks.apply_input_scaling``). ``bn_momentum``: BatchNorm's moving statistics forget at this
    rate per step; Keras' default 0.99 averages over ~100 steps, several epochs of a small data set,
    so evaluation would see statistics of weights long gone (0.9 is PyTorch's default)."""
    blocks.check_common(num_classes, image_size, dense_units, dropout, leaky_slope)
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be at least 1, got {num_blocks!r}")
    if not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum must be in [0, 1), got {bn_momentum!r}")
    if filters < 1:
        raise ValueError(f"filters must be positive, got {filters!r}")
    if image_size // 4 // 2 ** (num_blocks - 1) < 1:
        raise ValueError(f"image_size {image_size!r} is too small for {num_blocks!r} blocks")

    image = blocks.inputs(image_size)
    x = blocks.apply_input_scaling(image, pixel_stats)
    x = blocks.apply_conv_bn_act(x, filters, 7, 2, leaky_slope, bn_momentum, "stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for index in range(num_blocks):
        x = blocks.apply_residual_block(x, filters * 2**index, 1 if index == 0 else 2, leaky_slope, bn_momentum,
                                        f"block{index}")
    outputs = blocks.apply_classifier_head(x, num_classes, dense_units, dropout, leaky_slope)
    return keras.Model(image, outputs, name="resnet")
