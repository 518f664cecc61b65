"""Building blocks shared by the models, in the style of keras-hub backbones."""

import keras
from keras import layers


def apply_conv_bn_act(x, filters: int, kernel_size: int, strides: int, leaky_slope: float, name: str):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.LeakyReLU(negative_slope=leaky_slope, name=f"{name}_act")(x)


def apply_residual_block(x, filters: int, strides: int, leaky_slope: float, name: str):
    """Three 3x3 conv + BatchNorm + LeakyReLU, added to a 1x1-conv projection of the input."""
    skip = layers.Conv2D(filters, 1, strides=strides, padding="same", use_bias=False, name=f"{name}_skip_conv")(x)
    skip = layers.BatchNormalization(name=f"{name}_skip_bn")(skip)
    for index in range(3):
        x = apply_conv_bn_act(x, filters, 3, strides if index == 0 else 1, leaky_slope, f"{name}_{index}")
    return layers.Add(name=f"{name}_add")([x, skip])


def apply_classifier_head(x, num_classes: int, dense_units: int, dropout: float, leaky_slope: float):
    """Global average pooling, a Dense hidden layer with Dropout, softmax (kept in float32)."""
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dense(dense_units, name="head_dense")(x)
    x = layers.LeakyReLU(negative_slope=leaky_slope, name="head_act")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)


def check_common(num_classes: int, image_size: int, dense_units: int, dropout: float, leaky_slope: float,
                 min_image_size: int = 16) -> None:
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes!r}")
    if image_size < min_image_size:
        raise ValueError(f"image_size must be at least {min_image_size}, got {image_size!r}")
    if dense_units < 1:
        raise ValueError(f"dense_units must be positive, got {dense_units!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if leaky_slope < 0:
        raise ValueError(f"leaky_slope must not be negative, got {leaky_slope!r}")


def inputs(image_size: int) -> keras.KerasTensor:
    return keras.Input(shape=(image_size, image_size, 3), name="image")
