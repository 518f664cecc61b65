"""Automatic augmentation policies for the batch augmenter: TrivialAugment and RandAugment.

Both pick operations at random from one list (``OPERATIONS``, the RandAugment set): TrivialAugment
(Müller & Hutter, 2021) applies one operation per image at a magnitude drawn uniformly from
[0, 1]; RandAugment (Cubuk et al., 2020) applies ``RAND_OPERATIONS`` operations per image at the
fixed magnitude ``RAND_MAGNITUDE`` (timm's ``rand-m9-n2``: 9 on its 0-30 scale). Signed operations
(rotate, shear, translate, the enhancements) go either way with equal chance.

Each operation takes a uint8 ``[H, W, 3]`` image and a magnitude in [-1, 1] (0 changes nothing),
and returns a uint8 image of the same shape. Geometric ones are OpenCV warps (which release the
GIL) with reflected borders, as the augmenter's rotation; the rest are numpy on the image.
"""

import cv2
import numpy as np

RAND_OPERATIONS = 2
RAND_MAGNITUDE = 9 / 30
_GREY = np.array([0.299, 0.587, 0.114], np.float32)


def _warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def rotate(image, magnitude):
    height, width = image.shape[:2]
    return _warp(image, cv2.getRotationMatrix2D((width / 2, height / 2), 30.0 * magnitude, 1.0))


def shear_x(image, magnitude):
    shear, height = 0.3 * magnitude, image.shape[0]
    return _warp(image, np.float32([[1, shear, -shear * height / 2], [0, 1, 0]]))


def shear_y(image, magnitude):
    shear, width = 0.3 * magnitude, image.shape[1]
    return _warp(image, np.float32([[1, 0, 0], [shear, 1, -shear * width / 2]]))


def translate_x(image, magnitude):
    return _warp(image, np.float32([[1, 0, 0.3 * magnitude * image.shape[1]], [0, 1, 0]]))


def translate_y(image, magnitude):
    return _warp(image, np.float32([[1, 0, 0], [0, 1, 0.3 * magnitude * image.shape[0]]]))


def _blend(image: np.ndarray, other, factor: float) -> np.ndarray:
    """PIL's ImageEnhance: ``other + factor * (image - other)``, clipped to uint8."""
    mixed = np.asarray(other, np.float32) + factor * (image.astype(np.float32) - other)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def brightness(image, magnitude):
    return _blend(image, 0.0, 1.0 + 0.9 * magnitude)


def contrast(image, magnitude):
    return _blend(image, float((image.astype(np.float32) @ _GREY).mean()), 1.0 + 0.9 * magnitude)


def color(image, magnitude):
    return _blend(image, (image.astype(np.float32) @ _GREY)[..., None], 1.0 + 0.9 * magnitude)


def sharpness(image, magnitude):
    smooth = cv2.filter2D(image, -1, np.float32([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13)
    return _blend(image, smooth, 1.0 + 0.9 * magnitude)


def posterize(image, magnitude):
    bits = 8 - int(round(4 * abs(magnitude)))
    return image & np.uint8((0xFF << (8 - bits)) & 0xFF)


def solarize(image, magnitude):
    threshold = 256 - int(round(256 * abs(magnitude)))  # 256 (magnitude 0): nothing inverted
    return np.where(image >= threshold, 255 - image, image).astype(np.uint8)


def autocontrast(image, magnitude):
    low, high = image.min(axis=(0, 1), keepdims=True), image.max(axis=(0, 1), keepdims=True)
    scale = 255.0 / np.maximum(high.astype(np.float32) - low, 1)
    stretched = (image.astype(np.float32) - low) * scale
    return np.where(high > low, np.clip(stretched + 0.5, 0, 255), image).astype(np.uint8)


def equalize(image, magnitude):
    return np.stack([cv2.equalizeHist(np.ascontiguousarray(image[..., c])) for c in range(3)], axis=-1)


def identity(image, magnitude):
    return image


OPERATIONS = (identity, autocontrast, equalize, rotate, solarize, color, posterize, contrast, brightness, sharpness,
              shear_x, shear_y, translate_x, translate_y)


def draw(rng: np.random.Generator, policy: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(operations, magnitudes)``, each ``[count, k]``: indices into ``OPERATIONS`` and signed
    magnitudes of ``policy`` for ``count`` images (``k`` is 0 for ``none``)."""
    per_image = {"none": 0, "trivial": 1, "rand": RAND_OPERATIONS}[policy]
    operations = rng.integers(0, len(OPERATIONS), (count, per_image))
    strength = rng.random((count, per_image)) if policy == "trivial" else np.full((count, per_image), RAND_MAGNITUDE)
    signs = np.where(rng.random((count, per_image)) < 0.5, -1.0, 1.0)
    return operations, strength * signs


def apply(image: np.ndarray, operations: np.ndarray, magnitudes: np.ndarray) -> np.ndarray:
    """One image's drawn operations, in order."""
    for operation, magnitude in zip(operations, magnitudes):
        image = OPERATIONS[operation](image, float(magnitude))
    return image
