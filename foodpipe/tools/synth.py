"""``foodpipe synth``: a small dataset in Food-101's layout, for demos, tests and benchmarks.

Images are sized like Food-101 (longer side 512, the other 222–512). Each class is a shape filled
with a striped texture at a class-specific angle, period and hue; brightness, saturation, the
background, position, size and noise are random per image, so a CNN has to learn shape, texture
and colour together, not one flat colour. A few images are
grayscale and a few are PNG files named ``.jpg``, as in messy real data. ``--corrupt K`` adds K
broken files (empty, truncated JPEG, not an image).
"""

import colorsys
import dataclasses
import io
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from foodpipe import classes as class_lists
from foodpipe.config import setting
from foodpipe.errors import FoodpipeError

LONG_SIDE = 512
SHORT_SIDE_RANGE = (222, 512)
GRAYSCALE_FRACTION = 0.04
PNG_FRACTION = 0.03
CORRUPT_KINDS = ("empty", "truncated", "text")


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    out: str = setting(help="folder to write (Food-101 layout: images/CLASS/ID.jpg, meta/)", positional=True)
    classes: int = setting(help="number of classes (1-101)")
    per_class: int = setting(help="images per class")
    seed: int = setting(0, "seed of the drawing")
    corrupt: int = setting(0, "also write this many broken files")

    def __post_init__(self):
        if not 1 <= self.classes <= 101:
            raise FoodpipeError(f"--classes must be between 1 and 101, got {self.classes}")
        if self.per_class < 1:
            raise FoodpipeError(f"--per-class must be at least 1, got {self.per_class}")
        if self.corrupt < 0:
            raise FoodpipeError(f"--corrupt must not be negative, got {self.corrupt}")


def class_names(count: int) -> list[str]:
    """The ten classes of classes/seed10.txt first, then the rest of Food-101 in order."""
    seed = class_lists.builtin("seed10")
    rest = [name for name in class_lists.builtin("food101") if name not in seed]
    return (seed + rest)[:count]


def _class_style(index: int) -> tuple[float, float, int, float]:
    """Stripe angle (degrees), stripe period as a fraction of the image, shape id, and hue (0-1).

    Orientations are 30 degrees apart, twice the default rotation augmentation, so augmenting
    never turns one class into another; shape and period vary too, so no two classes share a style.
    Each class also has a hue (golden-ratio spaced), as real dishes have typical colours: the
    shapes alone are hard to tell apart at 64 px (a hexagon is nearly a disc there).
    """
    angle = (index % 6) * 30.0
    # 12 angle-shape pairs x 9 periods >= 101 classes. The shortest period still spans 6 pixels
    # when a whole image is shrunk to 64 px, so the texture survives small training sizes.
    period = 0.10 + 0.025 * ((index // 12) % 9)
    return angle, period, index % 4, (index * 0.6180339887) % 1.0


def _shape_alpha(shape: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """The class's shape at a random place and size, its edge blurred: ``(height, width, 1)`` in [0, 1]."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    cx, cy = rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height
    radius = rng.uniform(0.25, 0.4) * min(width, height)
    if shape == 0:
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
    elif shape == 1:
        draw.rectangle([cx - radius, cy - radius * 0.8, cx + radius, cy + radius * 0.8], fill=255)
    else:
        sides = 3 if shape == 2 else 6
        start = rng.uniform(0, 2 * np.pi)
        points = [
            (cx + radius * np.cos(start + 2 * np.pi * k / sides), cy + radius * np.sin(start + 2 * np.pi * k / sides))
            for k in range(sides)
        ]
        draw.polygon(points, fill=255)
    return np.asarray(mask.filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)[..., None] / np.float32(255)


def render_image(class_index: int, rng: np.random.Generator) -> Image.Image:
    short = int(rng.integers(SHORT_SIDE_RANGE[0], SHORT_SIDE_RANGE[1] + 1))
    width, height = (LONG_SIDE, short) if rng.random() < 0.5 else (short, LONG_SIDE)
    angle, period, shape, hue = _class_style(class_index)
    angle += rng.normal(0, 3)
    period *= rng.uniform(0.9, 1.1)
    # In float32, with a row and a column broadcast where a term depends on x or y alone: half the time
    # of float64 arrays of the whole image.
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]

    # Background: a smooth random gradient plus grain.
    base = rng.uniform(40, 215, size=3).astype(np.float32)
    tilt = rng.uniform(-60, 60, size=(2, 3)).astype(np.float32)
    background = (base + (xs[..., None] / width) * tilt[0]) + (ys[..., None] / height) * tilt[1]

    # Foreground: stripes at the class angle, in two random colours.
    theta = np.deg2rad(angle)
    scale = np.float32(1 / (period * LONG_SIDE))
    phase = xs * np.float32(np.cos(theta) * scale) + ys * np.float32(np.sin(theta) * scale)
    stripes = np.sin(np.float32(2 * np.pi) * (phase + np.float32(rng.random()))) > 0
    hue = (hue + rng.normal(0, 0.02)) % 1.0
    saturation, value = rng.uniform(0.45, 1.0), rng.uniform(0.55, 1.0)
    colour_a = np.array(colorsys.hsv_to_rgb(hue, saturation, value), np.float32) * 255
    colour_b = np.array(colorsys.hsv_to_rgb(hue, saturation, value * rng.uniform(0.3, 0.6)), np.float32) * 255

    alpha = _shape_alpha(shape, width, height, rng)

    # The shape's texture over the background (background + alpha * (texture - background)), plus noise.
    pixels = np.where(stripes[..., None], colour_a, colour_b)
    pixels -= background
    pixels *= alpha
    pixels += background
    pixels += rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)
    np.clip(pixels, 0, 255, out=pixels)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def encode(image: Image.Image, rng: np.random.Generator) -> bytes:
    """JPEG bytes, except a few grayscale JPEGs and PNGs in disguise."""
    buffer = io.BytesIO()
    draw = rng.random()
    if draw < PNG_FRACTION:
        image.save(buffer, format="PNG")
    elif draw < PNG_FRACTION + GRAYSCALE_FRACTION:
        image.convert("L").save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="JPEG", quality=int(rng.integers(75, 96)))
    return buffer.getvalue()


def corrupt_bytes(kind: str, rng: np.random.Generator) -> bytes:
    if kind == "empty":
        return b""
    if kind == "truncated":
        full = encode(render_image(0, rng), np.random.default_rng(1))
        return full[: len(full) // 3]
    return b"this is not an image\n" * 20


def generate(config: SynthConfig, progress=None) -> dict:
    """Write the dataset under ``config.out``; returns counts. Same seed, same bytes."""
    rng = np.random.default_rng(config.seed)
    names = class_names(config.classes)
    images_dir = os.path.join(config.out, "images")
    ids = rng.choice(9_000_000, size=config.classes * config.per_class + config.corrupt, replace=False) + 1_000_000
    listing: dict[str, list[str]] = {}
    next_id = iter(ids.tolist())
    for class_index, name in enumerate(names):
        os.makedirs(os.path.join(images_dir, name), exist_ok=True)
        for _ in range(config.per_class):
            image_id = str(next(next_id))
            with open(os.path.join(images_dir, name, f"{image_id}.jpg"), "wb") as f:
                f.write(encode(render_image(class_index, rng), rng))
            listing.setdefault(name, []).append(image_id)
            if progress:
                progress()
    for k in range(config.corrupt):
        name = names[k % len(names)]
        with open(os.path.join(images_dir, name, f"{next(next_id)}.jpg"), "wb") as f:
            f.write(corrupt_bytes(CORRUPT_KINDS[k % len(CORRUPT_KINDS)], rng))

    meta_dir = os.path.join(config.out, "meta")
    os.makedirs(meta_dir, exist_ok=True)
    with open(os.path.join(meta_dir, "classes.txt"), "w") as f:
        f.write("".join(f"{name}\n" for name in names))
    # Food-101's own meta split: the first three quarters of each class for training.
    first_test = 3 * config.per_class // 4
    for split, part in (("train", slice(None, first_test)), ("test", slice(first_test, None))):
        with open(os.path.join(meta_dir, f"{split}.txt"), "w") as f:
            f.write("".join(f"{name}/{image_id}\n" for name in names for image_id in listing[name][part]))
    return {"classes": len(names), "images": config.classes * config.per_class, "corrupt": config.corrupt}
