"""Building blocks shared by the models, in the style of keras-hub backbones."""

import keras
from keras import layers


def apply_conv_bn_act(x, filters: int, kernel_size: int, strides: int, leaky_slope: float, bn_momentum: float,
                      name: str):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.LeakyReLU(negative_slope=leaky_slope, name=f"{name}_act")(x)


def apply_residual_block(x, filters: int, strides: int, leaky_slope: float, bn_momentum: float, name: str):
    """Three 3x3 conv + BatchNorm + LeakyReLU, added to a 1x1-conv projection of the input."""
    skip = layers.Conv2D(filters, 1, strides=strides, padding="same", use_bias=False, name=f"{name}_skip_conv")(x)
    skip = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_skip_bn")(skip)
    for index in range(3):
        x = apply_conv_bn_act(x, filters, 3, strides if index == 0 else 1, leaky_slope, bn_momentum,
                              f"{name}_{index}")
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
    """uint8 pixels, as the input pipeline and the serving preprocessing deliver them."""
    return keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")


def apply_input_scaling(image, pixel_stats: tuple | None):
    """The model's first layer, saved with it: standard scaling with ``pixel_stats`` (per-channel
    ``(mean, std)`` in 0-255 units, the dataset's train statistics), or with None the ``[-1, 1]``
    scaling that ImageNet-trained Keras applications such as NASNetMobile expect."""
    if pixel_stats is None:
        return layers.Rescaling(1 / 127.5, offset=-1.0, name="scaling")(image)
    mean, std = pixel_stats
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"pixel_stats must be 3 means and 3 positive stds, got {pixel_stats!r}")
    return layers.Normalization(mean=[float(m) for m in mean], variance=[float(s) ** 2 for s in std],
                                name="scaling")(image)
