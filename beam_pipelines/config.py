"""The job's configuration: one typed, validated dataclass filled from command-line flags or a
config file (``foodpipe.config``)."""

import dataclasses

from beam_pipelines import split as splits
from foodpipe import config as settings, images, uri
from foodpipe.config import setting
from foodpipe.errors import FoodpipeError

DEFAULT_SPLIT = "0.75,0.2,0.05"  # the seed's 7500/2000/500 of 10,000 images


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    input: str = setting(help="dataset root in Food-101 layout (path or s3://bucket/prefix)", parse=uri.normalize)
    output: str = setting(help="where the TFRecords, metadata and manifest go", parse=uri.normalize)
    classes_file: str | None = setting(None, "keep only these classes (one per line); default: all")
    split: tuple[float, float, float] | None = setting(
        None, f"train,val,test fractions of each class, placed by a seeded hash (default: {DEFAULT_SPLIT}); 0,0,1 "
              "makes a held-out set", parse=splits.parse_fractions)
    split_from: str | None = setting(None, "Food-101's official split: test = INPUT/meta/test.txt, train and val "
                                           "from INPUT/meta/train.txt (--val-fraction), or INPUT/meta/val.txt where "
                                           "there is one", choices=("meta",))
    split_file: str | None = setting(None, "a CSV with the header image_id,split (train, val or test); ids are "
                                           "<class>/<file name without extension>, as in Food-101's lists",
                                     metavar="URI", parse=uri.normalize)
    val_fraction: float = setting(0.2, "with --split-from meta: the share of each class's official train images that "
                                       "go to val")
    unlisted: str = setting("reject", "an image no split list names: reject it (reason 'not in split lists'), put it "
                                      "in train, or skip it", choices=splits.UNLISTED_POLICIES)
    group_file: str | None = setting(None, "a CSV with the header image_id,group: the hash split keeps each group in "
                                           "one split", metavar="URI", parse=uri.normalize)
    group_pattern: str | None = setting(None, "the group of an image is the first capture group of REGEX searched "
                                              "in its id, e.g. '^(.+)__' for <class>/<subject>__<n>; an id it does "
                                              "not match is a group of its own", metavar="REGEX")
    shard_size_mb: float = setting(64.0, "target shard size, in MiB")
    seed: int = setting(0, "seed of the split and shuffle")
    min_side: int = setting(images.DEFAULT_MIN_SIDE, "reject images with a shorter side")
    max_pixels: int = setting(images.DEFAULT_MAX_PIXELS, "reject images declaring more pixels (decompression bombs)")
    max_side: int | None = setting(None, "store images with a longer side above N downscaled to N (default: as they "
                                         "are)")
    jpeg_quality: int = setting(images.CONVERTED_JPEG_QUALITY, "JPEG quality of every image the job re-encodes "
                                                               "(converted or downscaled)")

    def __post_init__(self):
        settings.check_choices(self)
        if self.split is not None and (self.split_from or self.split_file):
            flag = "--split-from" if self.split_from else "--split-file"
            raise FoodpipeError(f"--split gives fractions and {flag} gives lists: give one")
        if self.split_from and self.split_file:
            raise FoodpipeError("--split-from and --split-file both say where the split comes from: give one")
        if self.group_file and self.group_pattern:
            raise FoodpipeError("--group-file and --group-pattern both say what the groups are: give one")
        if self.split_file and (self.group_file or self.group_pattern):
            raise FoodpipeError("groups keep a hash split from dividing them; a --split-file already places every "
                                "image: give the groups or the split file")
        if not 0 <= self.val_fraction < 1:
            raise FoodpipeError(f"--val-fraction must be at least 0 and below 1, got {self.val_fraction}")
        if self.group_pattern:
            splits.compile_group_pattern(self.group_pattern)
        if self.shard_size_mb <= 0:
            raise FoodpipeError(f"--shard-size-mb must be positive, got {self.shard_size_mb}")
        if self.min_side < 1:
            raise FoodpipeError(f"--min-side must be at least 1, got {self.min_side}")
        if self.max_pixels < self.min_side ** 2:
            raise FoodpipeError(f"--max-pixels must be at least --min-side squared, got {self.max_pixels}")
        if self.max_side is not None and self.max_side < self.min_side:
            raise FoodpipeError(f"--max-side must be at least --min-side ({self.min_side}), got {self.max_side}")
        if not 1 <= self.jpeg_quality <= 100:
            raise FoodpipeError(f"--jpeg-quality must be between 1 and 100, got {self.jpeg_quality}")
        if uri.is_inside(self.output, self.input):
            raise FoodpipeError(f"--output {self.output} lies inside --input {self.input}: choose another place")
        if uri.is_inside(self.input, self.output):
            raise FoodpipeError(f"--input {self.input} lies inside --output {self.output}: choose another place")

    @property
    def policy(self) -> images.StorePolicy:
        return images.StorePolicy(self.min_side, self.max_pixels, self.max_side, self.jpeg_quality)

    @property
    def split_source(self) -> str:
        """Where the split comes from: ``fractions``, ``meta`` or ``file``."""
        return "meta" if self.split_from else "file" if self.split_file else "fractions"

    @property
    def images_root(self) -> str:
        return self.input.rstrip("/") + "/images"

    @property
    def shard_size_bytes(self) -> int:
        return int(self.shard_size_mb * 1024 * 1024)

    @property
    def fractions(self) -> tuple[float, float, float]:
        """The train, val and test fractions of the hash split (``--split``, else the default)."""
        return self.split or splits.parse_fractions(DEFAULT_SPLIT)

    def as_params(self) -> dict:
        """Everything needed to reproduce the run (no credentials live here)."""
        return {**dataclasses.asdict(self), "split": list(self.fractions)}
