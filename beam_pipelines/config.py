"""The job's configuration: one typed, validated dataclass filled from command-line flags."""

import argparse
import dataclasses

from beam_pipelines import split
from foodpipe import images, process, uri
from foodpipe.errors import FoodpipeError

DEFAULT_SPLIT = "0.75,0.2,0.05"  # the seed's 7500/2000/500 of 10,000 images
DEFAULT_SHARD_SIZE_MB = 64.0
DEFAULT_VAL_FRACTION = 0.2  # of Food-101's official train list, with --split-from meta


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    input: str
    output: str
    classes_file: str | None = None
    split: tuple[float, float, float] = split.parse_fractions(DEFAULT_SPLIT)
    split_from: str | None = None  # "meta": Food-101's lists under INPUT/meta/
    split_file: str | None = None  # a CSV image_id,split
    val_fraction: float = DEFAULT_VAL_FRACTION
    unlisted: str = "reject"  # an image no list names: reject, train or skip
    group_file: str | None = None  # a CSV image_id,group
    group_pattern: str | None = None  # a regex whose first capture group, on the image id, is the group
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB
    seed: int = 0
    min_side: int = images.DEFAULT_MIN_SIDE
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    max_side: int | None = None
    jpeg_quality: int = images.CONVERTED_JPEG_QUALITY

    def __post_init__(self):
        if self.split_from and self.split_file:
            raise FoodpipeError("--split-from and --split-file both say where the split comes from: give one")
        if self.group_file and self.group_pattern:
            raise FoodpipeError("--group-file and --group-pattern both say what the groups are: give one")
        if self.split_file and (self.group_file or self.group_pattern):
            raise FoodpipeError("groups keep a hash split from dividing them; a --split-file already places every "
                                "image: give the groups or the split file")
        if not 0 <= self.val_fraction < 1:
            raise FoodpipeError(f"--val-fraction must be at least 0 and below 1, got {self.val_fraction}")
        if self.unlisted not in split.UNLISTED_POLICIES:
            raise FoodpipeError(f"--unlisted must be one of {', '.join(split.UNLISTED_POLICIES)}, got {self.unlisted!r}")
        if self.group_pattern:
            split.compile_group_pattern(self.group_pattern)
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

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "PreprocessConfig":
        if args.split is not None and (args.split_from or args.split_file):
            flag = "--split-from" if args.split_from else "--split-file"
            raise FoodpipeError(f"--split gives fractions and {flag} gives lists: give one")
        return cls(
            input=uri.normalize(args.input),
            output=uri.normalize(args.output),
            classes_file=args.classes_file,
            split=split.parse_fractions(args.split or DEFAULT_SPLIT),
            split_from=args.split_from,
            split_file=args.split_file and uri.normalize(args.split_file),
            val_fraction=args.val_fraction,
            unlisted=args.unlisted,
            group_file=args.group_file and uri.normalize(args.group_file),
            group_pattern=args.group_pattern,
            shard_size_mb=args.shard_size_mb,
            seed=args.seed,
            min_side=args.min_side,
            max_pixels=args.max_pixels,
            max_side=args.max_side,
            jpeg_quality=args.jpeg_quality,
        )

    def as_params(self) -> dict:
        """Everything needed to reproduce the run (no credentials live here)."""
        return {**dataclasses.asdict(self), "split": list(self.split)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="dataset root in Food-101 layout (path or s3://bucket/prefix)")
    parser.add_argument("--output", required=True, help="where the TFRecords, metadata and manifest go")
    parser.add_argument("--classes-file", help="keep only these classes (one per line); default: all")
    parser.add_argument("--split", help=f"train,val,test fractions of each class, placed by a seeded hash "
                                         f"(default: {DEFAULT_SPLIT}); 0,0,1 makes a held-out set")
    parser.add_argument("--split-from", choices=["meta"],
                        help="Food-101's official split: test = INPUT/meta/test.txt, train and val from "
                             "INPUT/meta/train.txt (--val-fraction), or INPUT/meta/val.txt where there is one")
    parser.add_argument("--split-file", metavar="URI",
                        help="a CSV with the header image_id,split (train, val or test); ids are "
                             "<class>/<file name without extension>, as in Food-101's lists")
    parser.add_argument("--val-fraction", type=float, default=PreprocessConfig.val_fraction,
                        help="with --split-from meta: the share of each class's official train images that go to val")
    parser.add_argument("--unlisted", choices=split.UNLISTED_POLICIES, default=PreprocessConfig.unlisted,
                        help="an image no split list names: reject it (reason 'not in split lists'), put it in "
                             "train, or skip it")
    parser.add_argument("--group-file", metavar="URI",
                        help="a CSV with the header image_id,group: the hash split keeps each group in one split")
    parser.add_argument("--group-pattern", metavar="REGEX",
                        help="the group of an image is the first capture group of REGEX searched in its id, e.g. "
                             "'^(.+)__' for <class>/<subject>__<n>; an id it does not match is a group of its own")
    parser.add_argument("--shard-size-mb", type=float, default=PreprocessConfig.shard_size_mb,
                        help="target shard size, in MiB")
    parser.add_argument("--seed", type=int, default=PreprocessConfig.seed, help="seed of the split and shuffle")
    parser.add_argument("--min-side", type=int, default=PreprocessConfig.min_side,
                        help="reject images with a shorter side")
    parser.add_argument("--max-pixels", type=int, default=PreprocessConfig.max_pixels,
                        help="reject images declaring more pixels (decompression bombs)")
    parser.add_argument("--max-side", type=int,
                        help="store images with a longer side above N downscaled to N (default: as they are)")
    parser.add_argument("--jpeg-quality", type=int, default=PreprocessConfig.jpeg_quality,
                        help="JPEG quality of every image the job re-encodes (converted or downscaled)")
    process.add_s3_flag(parser)
