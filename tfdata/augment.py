"""Train-time augmentation of a batch of uint8 images, run inside one ``tf.numpy_function`` call
per batch (one call per image made tf.data's threads fight over the GIL).

A batch's random parameters are drawn at once (numpy). Then, image by image, the geometric steps
with albumentations' own operations (OpenCV underneath, which releases the GIL): horizontal flip,
rotation with reflected borders, the automatic policy's operations if one is chosen
(TrivialAugment or RandAugment, ``tfdata.policy``), Gaussian blur. Then one call of a Numba kernel compiled with
``nogil=True`` for the whole batch: brightness/contrast and Gaussian noise per pixel, uint8 in and
out (saturating), in a flat loop the compiler vectorizes; standard scaling is the model's first layer.
Noise comes from a pre-drawn table of standard normals, read from a random offset: drawing a normal
per pixel inside the kernel was the slowest step of the prototypes, a table read costs almost nothing.

Doing a batch at once halves the per-image cost of an albumentations ``Compose`` call and a kernel
call per image (the Python between the OpenCV calls holds the GIL); the figures, with their
commands and commits, are in docs/BENCHMARKS.md.
``scale_kernel`` remains as the input benchmark's Numba-vs-numpy rerun of the seed's scaling.
"""

import dataclasses
import threading

import numba
import numpy as np

from tfdata import policy

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
def photometric_kernel(images, alphas, betas, table, offsets, sigmas, out):
    """out[i] = round(clip(alphas[i] * images[i] + betas[i] + sigmas[i] * N(0,1), 0, 255)) as uint8,
    the normals of image i read from ``table[offsets[i]:]``; images contiguous [B, H, W, C]."""
    count = images.shape[0]
    size = images[0].size
    for i in range(count):
        source, target = images[i].reshape(-1), out[i].reshape(-1)
        alpha, beta, sigma = alphas[i], betas[i] + np.float32(0.5), sigmas[i]
        if sigma == 0:
            for e in range(size):
                value = alpha * np.float32(source[e]) + beta
                target[e] = np.uint8(min(max(value, np.float32(0)), np.float32(255)))
        else:
            noise = table[offsets[i]:offsets[i] + size]
            for e in range(size):
                value = alpha * np.float32(source[e]) + beta + sigma * noise[e]
                target[e] = np.uint8(min(max(value, np.float32(0)), np.float32(255)))


def photometric_numpy(images, alphas, betas, table, offsets, sigmas):
    """numpy reference of ``photometric_kernel`` (tests)."""
    size = images[0].size
    noise = np.stack([table[offset:offset + size] for offset in offsets]).reshape(images.shape)
    value = (alphas[:, None, None, None] * images.astype(np.float32) + betas[:, None, None, None]
             + sigmas[:, None, None, None] * noise)
    return np.floor(np.clip(value + 0.5, 0, 255)).astype(np.uint8)


def scale_numpy(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The numpy reference (and the benchmark's peer) for ``scale_kernel``."""
    return (image.astype(np.float32) - mean) / std


def scale(image: np.ndarray, mean: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    out = np.empty(image.shape, np.float32)
    scale_kernel(image, mean, inv_std, out)
    return out


BLUR_KERNEL_SIZES = (3, 5)  # and sigmas in BLUR_SIGMA: albumentations' GaussianBlur(blur_limit=(3, 5))
BLUR_SIGMA = (0.5, 3.0)


@dataclasses.dataclass(frozen=True)
class Draws:
    """One batch's random parameters, an array each with one entry per image."""

    flip: np.ndarray  # bool
    angle: np.ndarray  # degrees; NaN: no rotation
    blur_size: np.ndarray  # Gaussian kernel size; 0: no blur
    blur_sigma: np.ndarray
    alpha: np.ndarray  # contrast (float32; 1 unchanged)
    beta: np.ndarray  # brightness in pixel levels (float32; 0 unchanged)
    noise_offset: np.ndarray  # where the image's normals start in the noise table
    noise_sigma: np.ndarray  # float32; 0 no noise
    policy_operations: np.ndarray  # [images, k] indices into policy.OPERATIONS (k = 0 without a policy)
    policy_magnitudes: np.ndarray  # [images, k] signed magnitudes in [-1, 1]


class Augmenter:
    """Callable on a batch: uint8 [B, H, W, 3] -> augmented uint8. Each thread that calls it gets
    its own random generator."""

    def __init__(self, config):
        self.config = config
        # No wrap-around inside an image: the table holds two images' worth of normals at least.
        table_size = max(NOISE_TABLE_SIZE, 2 * 3 * config.image_size ** 2) if config.noise_std > 0 else 1
        self.noise_table = np.random.default_rng(config.seed).standard_normal(table_size).astype(np.float32)
        self._local = threading.local()
        self._seeds = np.random.SeedSequence(config.seed)
        self._lock = threading.Lock()
        # Imported here, in the constructing thread: tf.data's threads importing at once deadlock.
        import cv2
        from albumentations.augmentations.blur import functional as fblur
        from albumentations.augmentations.geometric import functional as fgeometric
        from albumentations.augmentations.pixel import functional as fpixel

        self._operations = (cv2, fblur, fgeometric, fpixel)
        cv2.setNumThreads(1)  # tf.data runs many map calls at once; nested OpenCV threads only contend

    def _generator(self) -> np.random.Generator:
        rng = getattr(self._local, "rng", None)
        if rng is None:
            with self._lock:
                rng = self._local.rng = np.random.default_rng(self._seeds.spawn(1)[0])
        return rng

    def draw(self, rng: np.random.Generator, count: int, pixels: int) -> Draws:
        """Each augmentation on about ``augment_probability`` of the images (flip: half of them)."""
        config, p = self.config, self.config.augment_probability

        def chosen(on: bool, share: float = p) -> np.ndarray:
            return rng.random(count) < share if on else np.zeros(count, bool)

        limit = config.brightness_contrast
        lighting = chosen(limit > 0)
        noisy = chosen(config.noise_std > 0)
        operations, magnitudes = policy.draw(rng, config.auto_augment, count)
        return Draws(
            flip=chosen(config.flip, 0.5),
            angle=np.where(chosen(config.rotate_degrees > 0),
                           rng.uniform(-config.rotate_degrees, config.rotate_degrees, count), np.nan),
            blur_size=np.where(chosen(config.blur), rng.choice(BLUR_KERNEL_SIZES, count), 0),
            blur_sigma=rng.uniform(*BLUR_SIGMA, count),
            alpha=np.where(lighting, 1 + rng.uniform(-limit, limit, count), 1).astype(np.float32),
            beta=np.where(lighting, 255 * rng.uniform(-limit, limit, count), 0).astype(np.float32),
            noise_offset=rng.integers(0, max(1, self.noise_table.size - pixels + 1), count),
            noise_sigma=np.where(noisy, config.noise_std, 0).astype(np.float32),
            policy_operations=operations,
            policy_magnitudes=magnitudes,
        )

    def __call__(self, images: np.ndarray) -> np.ndarray:
        draws = self.draw(self._generator(), len(images), images[0].size)
        shaped = np.empty(images.shape, np.uint8)
        for index, image in enumerate(images):
            shaped[index] = self.geometric(image, draws, index)
        out = np.empty(images.shape, np.uint8)
        photometric_kernel(shaped, draws.alpha, draws.beta, self.noise_table, draws.noise_offset, draws.noise_sigma,
                           out)
        return out

    def geometric(self, image: np.ndarray, draws: Draws, index: int) -> np.ndarray:
        """Flip, rotation (about the centre, borders reflected), the policy's operations and blur of
        one image, as drawn, with the albumentations operations its HorizontalFlip, Rotate and
        GaussianBlur apply."""
        cv2, fblur, fgeometric, fpixel = self._operations
        if draws.flip[index]:
            image = fgeometric.hflip(image)
        if not np.isnan(draws.angle[index]):
            no_shift, no_shear, no_scale = {"x": 0, "y": 0}, {"x": 0, "y": 0}, {"x": 1, "y": 1}
            matrix = fgeometric.create_affine_transformation_matrix(
                no_shift, no_shear, no_scale, float(draws.angle[index]), fgeometric.center(image.shape))
            image = fgeometric.warp_affine(image, matrix, cv2.INTER_LINEAR, 0, cv2.BORDER_REFLECT_101,
                                           image.shape[:2])
        image = policy.apply(image, draws.policy_operations[index], draws.policy_magnitudes[index])
        if draws.blur_size[index]:
            kernel = fblur.create_gaussian_kernel_1d(float(draws.blur_sigma[index]), int(draws.blur_size[index]))
            image = fpixel.separable_convolve(image, kernel=kernel)
        return image
