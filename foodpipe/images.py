"""Validating one raw image and turning it into what the dataset stores. Pure functions on bytes.

RGB JPEGs are stored byte for byte; anything else Pillow can decode (grayscale, CMYK, PNG, ...) is
converted to an RGB JPEG, and with a ``max_side`` a larger image is downscaled (its longer side to
``max_side``) and re-encoded. Declared dimensions are checked from the header before any pixel is
decoded, so a decompression bomb is rejected without allocating it.
"""

import dataclasses
import io
import warnings

from PIL import Image

DEFAULT_MIN_SIDE = 32
DEFAULT_MAX_PIXELS = 40_000_000  # Food-101 images are at most 512 x 512
CONVERTED_JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class StorePolicy:
    """What the dataset accepts and how it stores it."""

    min_side: int = DEFAULT_MIN_SIDE  # reject images with a shorter side
    max_pixels: int = DEFAULT_MAX_PIXELS  # reject images declaring more pixels (decompression bombs)
    max_side: int | None = None  # store larger images downscaled to this longer side
    jpeg_quality: int = CONVERTED_JPEG_QUALITY  # of every image the job re-encodes


DEFAULT_POLICY = StorePolicy()


@dataclasses.dataclass(frozen=True)
class PixelSums:
    """Exact per-channel partial sums over RGB pixels: the unit the stats combiner merges."""

    count: int  # pixels (per channel)
    total: tuple[int, int, int]
    squares: tuple[int, int, int]

    def __add__(self, other: "PixelSums") -> "PixelSums":
        return PixelSums(
            self.count + other.count,
            tuple(a + b for a, b in zip(self.total, other.total)),
            tuple(a + b for a, b in zip(self.squares, other.squares)),
        )

    def __reduce__(self):  # pickled as its values, without the field names
        return PixelSums, (self.count, self.total, self.squares)


ZERO_SUMS = PixelSums(0, (0, 0, 0), (0, 0, 0))


@dataclasses.dataclass(frozen=True)
class Inspection:
    """What validation found: either ``reason`` (rejected) or the stored image's facts."""

    reason: str | None = None
    height: int = 0
    width: int = 0
    stored_size: int = 0
    sums: PixelSums = ZERO_SUMS
    converted_data: bytes | None = None  # the stored bytes when they are not the raw bytes

    @property
    def converted(self) -> bool:
        return self.converted_data is not None


class Rejected(ValueError):
    """The image cannot go into the dataset; the message is the reason recorded for it."""


def open_checked(data: bytes, min_side: int, max_pixels: int) -> Image.Image:
    """Open ``data`` lazily and check its declared size; raises ``Rejected``."""
    if not data:
        raise Rejected("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Rejected(f"decompression bomb: {exc}") from None
    except Exception as exc:  # Pillow raises many types for garbage input
        raise Rejected(f"not an image ({type(exc).__name__})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise Rejected(f"too many pixels: {width}x{height} > {max_pixels}")
    if min(width, height) < min_side:
        raise Rejected(f"too small: {width}x{height}, minimum side is {min_side}")
    return image


def decode_rgb(image: Image.Image) -> Image.Image:
    try:
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")
    except Exception as exc:
        raise Rejected(f"undecodable ({type(exc).__name__}: {exc})") from None


def stored_bytes(data: bytes, policy: StorePolicy = DEFAULT_POLICY) -> bytes:
    """The bytes the dataset stores for ``data``: itself if an RGB JPEG within ``max_side``, else an
    RGB JPEG converted (and downscaled to ``max_side``, Lanczos) at ``jpeg_quality``."""
    image = open_checked(data, policy.min_side, policy.max_pixels)
    too_large = policy.max_side is not None and max(image.size) > policy.max_side
    if image.format == "JPEG" and image.mode == "RGB" and not too_large:
        return data
    if too_large:
        scale = policy.max_side / max(image.size)
        size = tuple(max(1, round(side * scale)) for side in image.size)
        image.draft("RGB", size)  # a JPEG decodes at a DCT scale no smaller than ``size``: less to decode
        image = decode_rgb(image).resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    decode_rgb(image).save(buffer, format="JPEG", quality=policy.jpeg_quality)
    return buffer.getvalue()


def pixel_sums(image: Image.Image) -> PixelSums:
    """Exact channel sums and sums of squares of an RGB image, from its 3 x 256 histogram."""
    histogram = image.histogram()
    total, squares = [], []
    for channel in range(3):
        counts = histogram[256 * channel: 256 * (channel + 1)]
        total.append(sum(value * n for value, n in enumerate(counts)))
        squares.append(sum(value * value * n for value, n in enumerate(counts)))
    width, height = image.size
    return PixelSums(width * height, tuple(total), tuple(squares))


def inspect(data: bytes, policy: StorePolicy = DEFAULT_POLICY) -> Inspection:
    """Validate one raw image and measure what will be stored (decoding the stored bytes)."""
    try:
        stored = stored_bytes(data, policy)
        image = decode_rgb(Image.open(io.BytesIO(stored)))
    except Rejected as exc:
        return Inspection(reason=str(exc))
    width, height = image.size
    return Inspection(
        height=height, width=width, stored_size=len(stored), sums=pixel_sums(image),
        converted_data=None if stored is data else stored,
    )
