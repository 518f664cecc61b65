"""The input pipeline's configuration: one typed, validated dataclass."""

import dataclasses

from foodpipe import config as settings
from foodpipe.config import setting
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
    image_size: int = setting(224, "side of the model's square input, in pixels")
    batch_size: int = setting(64, "global batch size, split across replicas")
    shuffle_buffer: int = setting(2048, "records shuffled at once (bounds the pipeline's memory, not the data set)")
    seed: int = setting(0, "seed of the data order and the augmentation (train: also of the weights)")
    framing: str = setting("squash", "how the model sees an image: squash (whole image to a square), pad (whole "
                           "image, aspect kept, black borders) or crop (centred square, see --eval-crop-fraction)",
                           choices=FRAMINGS)
    eval_crop_fraction: float = setting(0.875, "framing crop: side of the centred square as a share of the shorter "
                                               "side")
    # The train view: a random window of [crop_area_min, 1] times the eval window's area, its aspect
    # ratio changed by a factor in [1/crop_aspect_max, crop_aspect_max], anywhere in the image.
    crop_area_min: float = setting(0.5, "train view: the smallest random window, as a share of the eval window's "
                                        "area")
    crop_aspect_max: float = setting(4 / 3, "train view: the window's aspect ratio is changed by a factor in "
                                            "[1/X, X]")
    # Augmentations (train only), each a switch.
    flip: bool = setting(True, "random left-right mirroring (--no-flip for data whose meaning changes when "
                               "mirrored)")
    rotate_degrees: float = setting(10.0, "random rotation up to this many degrees; 0 turns it off")
    brightness_contrast: float = setting(0.1, "random brightness and contrast change up to this fraction; 0 turns "
                                              "it off")
    noise_std: float = setting(0.0, "Gaussian noise with this standard deviation in pixel units; 0 turns it off")
    blur: bool = setting(False, "random Gaussian blur (3-5 px kernel)")
    augment_probability: float = setting(0.5, "each augmentation but flip is applied to this share of images")
    auto_augment: str = setting("none", "an automatic augmentation policy on every train image: trivial "
                                "(TrivialAugment: one random operation at a random strength) or rand (RandAugment: "
                                "two at strength 9/30)", choices=POLICIES)
    # Reading.
    cycle_length: int = setting(8, "shards read at once")
    read_buffer_mb: float = setting(8.0, "per-shard read buffer, in MB (large buffers matter on S3)")
    skip_corrupt: bool = setting(False, "skip unreadable TFRecord records instead of stopping with the shard's name")
    input_service: str | None = setting(None, "grpc://HOST:PORT of a tf.data service dispatcher ('foodpipe "
                                              "input-service'): its workers read, decode and augment the train "
                                              "split, an epoch is one pass over it (val is read here)")
    input_service_timeout: float = setting(120.0, "with --input-service: stop with one line after this many seconds "
                                                  "without a train batch")

    @property
    def crop_area(self) -> tuple[float, float]:
        return self.crop_area_min, 1.0

    @property
    def crop_aspect(self) -> tuple[float, float]:
        return 1 / self.crop_aspect_max, self.crop_aspect_max

    def __post_init__(self):
        settings.check_choices(self)
        if self.input_service:
            from tfdata import service

            service.host_port(self.input_service)
        checks = [
            (16 <= self.image_size <= 2048, f"image_size must be between 16 and 2048, got {self.image_size}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
            (0 < self.crop_area_min <= 1, f"crop_area_min must be in (0, 1], got {self.crop_area_min}"),
            (self.crop_aspect_max >= 1, f"crop_aspect_max must be at least 1, got {self.crop_aspect_max}"),
            (0 < self.eval_crop_fraction <= 1, f"eval_crop_fraction must be in (0, 1], got {self.eval_crop_fraction}"),
            (0 <= self.augment_probability <= 1,
             f"augment_probability must be in [0, 1], got {self.augment_probability}"),
            (0 <= self.rotate_degrees <= 180, f"rotate_degrees must be in [0, 180], got {self.rotate_degrees}"),
            (0 <= self.brightness_contrast < 1,
             f"brightness_contrast must be in [0, 1), got {self.brightness_contrast}"),
            (self.noise_std >= 0, f"noise_std must not be negative, got {self.noise_std}"),
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
