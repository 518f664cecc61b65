"""The input pipeline's configuration: one typed, validated dataclass."""

import dataclasses

from foodpipe.errors import FoodpipeError

# How the model sees an image (eval, serving and predict; training sees random versions of it):
#   squash: the whole image resized to a square (aspect ratio not kept);
#   pad:    the whole image resized to fit the square, aspect kept, the rest black;
#   crop:   a centred square of ``eval_crop_fraction`` times the shorter side.
FRAMINGS = ("squash", "pad", "crop")
# Automatic augmentation policies (tfdata.policy): none, TrivialAugment, RandAugment.
POLICIES = ("none", "trivial", "rand")


@dataclasses.dataclass(frozen=True)
class InputConfig:
    image_size: int = 224
    batch_size: int = 64  # global; each replica gets batch_size / replicas
    shuffle_buffer: int = 2048  # records; bounds the pipeline's memory, not the dataset size
    seed: int = 0
    framing: str = "squash"
    eval_crop_fraction: float = 0.875  # framing "crop" only
    # The train view: a random window of ``crop_area`` times the eval window's area, its aspect
    # ratio changed by a factor in ``crop_aspect``, anywhere in the image (see pipeline.random_window).
    crop_area: tuple[float, float] = (0.5, 1.0)
    crop_aspect: tuple[float, float] = (3 / 4, 4 / 3)
    # Augmentations (train only), each a switch.
    flip: bool = True
    rotate_degrees: float = 10.0  # 0 turns rotation off
    brightness_contrast: float = 0.1  # 0 turns it off
    noise_std: float = 0.0  # Gaussian noise, pixel units; 0 turns it off
    blur: bool = False
    augment_probability: float = 0.5  # each augmentation is applied to about this share of images
    auto_augment: str = "none"  # an automatic policy on every image: none, trivial or rand (tfdata.policy)
    # Reading.
    cycle_length: int = 8  # shards read at once
    read_buffer_mb: float = 8.0  # per-shard read buffer (large buffers matter on S3)
    skip_corrupt: bool = False  # skip (and count) records after a corrupt spot instead of failing

    def __post_init__(self):
        checks = [
            (16 <= self.image_size <= 2048, f"image_size must be between 16 and 2048, got {self.image_size}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
            (self.framing in FRAMINGS, f"unknown framing {self.framing!r}: choose one of {', '.join(FRAMINGS)}"),
            (0 < self.crop_area[0] <= self.crop_area[1] <= 1,
             f"crop_area must be 0 < low <= high <= 1, got {self.crop_area}"),
            (0 < self.crop_aspect[0] <= 1 <= self.crop_aspect[1],
             f"crop_aspect must be 0 < low <= 1 <= high, got {self.crop_aspect}"),
            (0 < self.eval_crop_fraction <= 1, f"eval_crop_fraction must be in (0, 1], got {self.eval_crop_fraction}"),
            (0 <= self.augment_probability <= 1,
             f"augment_probability must be in [0, 1], got {self.augment_probability}"),
            (0 <= self.rotate_degrees <= 180, f"rotate_degrees must be in [0, 180], got {self.rotate_degrees}"),
            (0 <= self.brightness_contrast < 1,
             f"brightness_contrast must be in [0, 1), got {self.brightness_contrast}"),
            (self.noise_std >= 0, f"noise_std must not be negative, got {self.noise_std}"),
            (self.auto_augment in POLICIES,
             f"unknown auto_augment {self.auto_augment!r}: choose one of {', '.join(POLICIES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise FoodpipeError(message)

    @property
    def any_augmentation(self) -> bool:
        return (self.flip or self.rotate_degrees > 0 or self.brightness_contrast > 0 or self.noise_std > 0 or self.blur
                or self.auto_augment != "none")

    def without_augmentation(self) -> "InputConfig":
        return dataclasses.replace(self, flip=False, rotate_degrees=0.0, brightness_contrast=0.0, noise_std=0.0,
                                   blur=False, auto_augment="none")
