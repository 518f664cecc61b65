"""The job's configuration: one typed, validated dataclass filled from command-line flags."""

import argparse
import dataclasses

from beam_pipelines import split
from foodpipe import images, uri
from foodpipe.errors import FoodpipeError

DEFAULT_SPLIT = "0.75,0.2,0.05"  # the seed's 7500/2000/500 of 10,000 images
DEFAULT_SHARD_SIZE_MB = 64.0


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    input: str
    output: str
    classes_file: str | None = None
    split: tuple[float, float, float] = (0.75, 0.2, 0.05)
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB
    seed: int = 0
    min_side: int = images.DEFAULT_MIN_SIDE
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    max_side: int | None = None
    jpeg_quality: int = images.CONVERTED_JPEG_QUALITY

    def __post_init__(self):
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
    def images_root(self) -> str:
        return self.input.rstrip("/") + "/images"

    @property
    def shard_size_bytes(self) -> int:
        return int(self.shard_size_mb * 1024 * 1024)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "PreprocessConfig":
        return cls(
            input=uri.normalize(args.input),
            output=uri.normalize(args.output),
            classes_file=args.classes_file,
            split=split.parse_fractions(args.split),
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
    parser.add_argument("--split", default=DEFAULT_SPLIT, help="train,val,test fractions")
    parser.add_argument("--shard-size-mb", type=float, default=DEFAULT_SHARD_SIZE_MB, help="target shard size, in MiB")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and shuffle")
    parser.add_argument("--min-side", type=int, default=images.DEFAULT_MIN_SIDE,
                        help="reject images with a shorter side")
    parser.add_argument("--max-pixels", type=int, default=images.DEFAULT_MAX_PIXELS,
                        help="reject images declaring more pixels (decompression bombs)")
    parser.add_argument("--max-side", type=int,
                        help="store images with a longer side above N downscaled to N (default: as they are)")
    parser.add_argument("--jpeg-quality", type=int, default=images.CONVERTED_JPEG_QUALITY,
                        help="JPEG quality of every image the job re-encodes (converted or downscaled)")
    parser.add_argument("--s3-endpoint", help="S3 endpoint URL (default: $AWS_ENDPOINT_URL, else AWS)")
