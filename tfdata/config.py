"""The input pipeline's configuration: one typed, validated dataclass."""

import dataclasses

from foodpipe.errors import FoodpipeError


@dataclasses.dataclass(frozen=True)
class InputConfig:
    image_size: int = 224
    batch_size: int = 64  # global; each replica gets batch_size / replicas
    shuffle_buffer: int = 2048  # records; bounds the pipeline's memory, not the dataset size
    seed: int = 0
    # Random-resized-crop window (train): fraction of the image area and aspect ratio range.
    crop_area: tuple[float, float] = (0.25, 1.0)
    crop_aspect: tuple[float, float] = (3 / 4, 4 / 3)
    eval_crop_fraction: float = 0.875  # centre crop of the shorter side (eval and serving)
    # Augmentations (train only), each a switch, as in the seed report.
    flip: bool = True
    rotate_degrees: float = 15.0  # 0 turns rotation off
    brightness_contrast: float = 0.2  # 0 turns it off
    noise_std: float = 8.0  # Gaussian noise, pixel units; 0 turns it off
    blur: bool = True
    augment_probability: float = 0.5  # each augmentation is applied to about this share of images
    # Reading.
    cycle_length: int = 8  # shards read at once
    read_buffer_mb: float = 8.0  # per-shard read buffer (large buffers matter on S3)
    skip_corrupt: bool = False  # skip (and count) records after a corrupt spot instead of failing

    def __post_init__(self):
        if not 16 <= self.image_size <= 2048:
            raise FoodpipeError(f"image_size must be between 16 and 2048, got {self.image_size}")
        if self.batch_size < 1:
            raise FoodpipeError(f"batch_size must be at least 1, got {self.batch_size}")
        if not 0 < self.crop_area[0] <= self.crop_area[1] <= 1:
            raise FoodpipeError(f"crop_area must be 0 < low <= high <= 1, got {self.crop_area}")
        if not 0 < self.eval_crop_fraction <= 1:
            raise FoodpipeError(f"eval_crop_fraction must be in (0, 1], got {self.eval_crop_fraction}")
        if not 0 <= self.augment_probability <= 1:
            raise FoodpipeError(f"augment_probability must be in [0, 1], got {self.augment_probability}")

    @property
    def any_augmentation(self) -> bool:
        return self.flip or self.rotate_degrees > 0 or self.brightness_contrast > 0 or self.noise_std > 0 or self.blur

    def without_augmentation(self) -> "InputConfig":
        return dataclasses.replace(self, flip=False, rotate_degrees=0.0, brightness_contrast=0.0, noise_std=0.0,
                                   blur=False)
