"""Train-time augmentation of a batch of uint8 images, run inside one ``tf.numpy_function`` call
per batch (one call per image made tf.data's threads fight over the GIL: 242 img/s against 557).

albumentations does rotation and blur (OpenCV, which releases the GIL). Everything per pixel is one
pass of a Numba kernel compiled with ``nogil=True``: horizontal flip, brightness/contrast and
Gaussian noise, uint8 in and out (saturating); standard scaling is the model's first layer.
Noise comes from a pre-drawn table of standard normals read from a random offset: drawing a normal
per pixel inside the kernel ran at 307 img/s in the prototypes, a table lookup costs almost nothing.
``scale_kernel`` remains as the input benchmark's Numba-vs-numpy rerun of the seed's scaling.
"""

import threading

import numba
import numpy as np

NOISE_TABLE_SIZE = 1 << 21


@numba.njit(nogil=True, cache=True)
def scale_kernel(image, mean, inv_std, out):
    """out = (image - mean) * inv_std, per channel."""
    h, w, c = image.shape
    for y in range(h):
        for x in range(w):
            for k in range(c):
                out[y, x, k] = (np.float32(image[y, x, k]) - mean[k]) * inv_std[k]


@numba.njit(nogil=True, cache=True)
def augment_kernel(image, flip, alpha, beta, table, offset, sigma, out):
    """out = round(clip(alpha * image + beta + sigma * N(0,1), 0, 255)) as uint8, mirrored
    left-right when ``flip``; normals read from ``table`` from ``offset`` on."""
    h, w, c = image.shape
    n = table.shape[0]
    j = offset
    for y in range(h):
        for x in range(w):
            source_x = w - 1 - x if flip else x
            for k in range(c):
                value = alpha * np.float32(image[y, source_x, k]) + beta + sigma * table[j]
                out[y, x, k] = np.uint8(min(max(value + np.float32(0.5), np.float32(0)), np.float32(255)))
                j += 1
                if j == n:
                    j = 0


def augment_numpy(image, flip, alpha, beta, table, offset, sigma):
    """numpy reference of ``augment_kernel`` (tests)."""
    if flip:
        image = image[:, ::-1]
    noise = np.take(table, np.arange(offset, offset + image.size), mode="wrap").reshape(image.shape)
    value = alpha * image.astype(np.float32) + beta + sigma * noise
    return np.floor(np.clip(value + 0.5, 0, 255)).astype(np.uint8)


def scale_numpy(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The numpy reference (and the benchmark's peer) for ``scale_kernel``."""
    return (image.astype(np.float32) - mean) / std


def scale(image: np.ndarray, mean: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    out = np.empty(image.shape, np.float32)
    scale_kernel(image, mean, inv_std, out)
    return out


class Augmenter:
    """Callable on a batch: uint8 [B, H, W, 3] -> augmented uint8. Each thread that calls it gets
    its own albumentations pipeline and random generator."""

    def __init__(self, config):
        self.config = config
        self.noise_table = np.random.default_rng(config.seed).standard_normal(NOISE_TABLE_SIZE).astype(np.float32)
        self._local = threading.local()
        self._seeds = np.random.SeedSequence(config.seed)
        self._lock = threading.Lock()

    def _thread_state(self):
        state = getattr(self._local, "state", None)
        if state is None:
            with self._lock:
                seed = int(self._seeds.spawn(1)[0].generate_state(1)[0])
            state = (build_albumentations(self.config, seed), np.random.default_rng(seed))
            self._local.state = state
        return state

    def draw(self, rng):
        """Per-image parameters of the kernel: flip, contrast alpha, brightness beta, noise."""
        config, p = self.config, self.config.augment_probability
        flip = config.flip and rng.random() < 0.5
        alpha, beta = np.float32(1), np.float32(0)
        if config.brightness_contrast > 0 and rng.random() < p:
            limit = config.brightness_contrast
            alpha = np.float32(1 + rng.uniform(-limit, limit))
            beta = np.float32(255 * rng.uniform(-limit, limit))
        sigma = np.float32(config.noise_std if config.noise_std > 0 and rng.random() < p else 0)
        return flip, alpha, beta, int(rng.integers(0, NOISE_TABLE_SIZE)), sigma

    def __call__(self, images: np.ndarray) -> np.ndarray:
        transform, rng = self._thread_state()
        out = np.empty(images.shape, np.uint8)
        for index, image in enumerate(images):
            if transform is not None:
                image = transform(image=image)["image"]
            flip, alpha, beta, offset, sigma = self.draw(rng)
            augment_kernel(image, flip, alpha, beta, self.noise_table, offset, sigma, out[index])
        return out


def build_albumentations(config, seed: int):
    """Rotation and blur as switched on in ``config`` (None if neither)."""
    import albumentations as A
    import cv2

    cv2.setNumThreads(1)  # tf.data runs many map calls at once; nested OpenCV threads only contend
    p = config.augment_probability
    steps = []
    if config.rotate_degrees > 0:
        steps.append(A.Rotate(limit=config.rotate_degrees, border_mode=cv2.BORDER_REFLECT_101, p=p))
    if config.blur:
        steps.append(A.GaussianBlur(blur_limit=(3, 5), p=p))
    return A.Compose(steps, seed=seed) if steps else None
