import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from foodpipe import images
from tests.conftest import REPO


def jpeg(mode="RGB", size=(120, 90), fmt="JPEG", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (its pixel data is cut short)."""
    return png(width, height, zlib.compress(b"\0" * 64))


def png_bomb(width: int, height: int) -> bytes:
    """A small PNG that really decodes to ``width`` x ``height`` black RGB pixels."""
    compressor, row = zlib.compressobj(9), b"\0" * (1 + 3 * width)  # each row: filter byte, then pixels
    return png(width, height, b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush())


PEAK_GROWTH = """
import json, resource, sys
from foodpipe import images
from tests.test_images import png_bomb
data = png_bomb(int(sys.argv[1]), int(sys.argv[2]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reason = images.inspect(data).reason
print(json.dumps({"reason": reason, "bytes": len(data),
                  "peak_growth": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024}))
"""


def test_rgb_jpeg_is_stored_byte_for_byte():
    data = jpeg()
    found = images.inspect(data)
    assert found.reason is None and not found.converted
    assert images.stored_bytes(data) is data
    assert (found.width, found.height, found.stored_size) == (120, 90, len(data))


@pytest.mark.parametrize("mode,fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "PNG"), ("RGBA", "PNG"), ("P", "PNG")])
def test_other_modes_and_formats_become_rgb_jpeg(mode, fmt):
    data = jpeg(mode=mode, fmt=fmt)
    found = images.inspect(data)
    assert found.reason is None and found.converted
    stored = Image.open(io.BytesIO(images.stored_bytes(data)))
    assert (stored.format, stored.mode, stored.size) == ("JPEG", "RGB", (120, 90))
    assert found.stored_size == len(images.stored_bytes(data))


@pytest.mark.parametrize("mode,fmt", [("RGB", "JPEG"), ("L", "JPEG"), ("RGB", "PNG")])
def test_max_side_downscales_larger_images_only(mode, fmt):
    data = jpeg(mode=mode, fmt=fmt)  # 120 x 90
    policy = images.StorePolicy(max_side=60, jpeg_quality=80)
    stored = Image.open(io.BytesIO(images.stored_bytes(data, policy)))
    assert (stored.format, stored.mode, stored.size) == ("JPEG", "RGB", (60, 45))
    found = images.inspect(data, policy)
    assert (found.width, found.height, found.converted) == (60, 45, True)
    assert found.sums.count == 60 * 45  # the statistics are the stored pixels'
    kept = images.StorePolicy(max_side=120)
    assert mode != "RGB" or fmt != "JPEG" or images.stored_bytes(data, kept) is data  # not larger: untouched


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"hello, not an image" * 10, "not an image"),
    (jpeg()[:300], "not an image"),  # cut inside the header
    (jpeg()[: len(jpeg()) // 2], "undecodable"),  # header fine, pixel data cut
    (jpeg(size=(20, 200)), "too small"),
])
def test_bad_images_are_rejected_with_a_reason(data, reason):
    assert images.inspect(data).reason.startswith(reason)


def test_decompression_bomb_is_rejected_without_allocating_it():
    """A ~190 KB PNG that decodes to 8000 x 8000 pixels (192 MB; decoding it raises a process's
    peak by ~240 MB): above foodpipe's ``max_pixels``, below Pillow's own bomb limit, so foodpipe's
    check is what stops it. Measured as the peak RSS of a child process (tracemalloc does not see
    Pillow's pixel buffers)."""
    child = subprocess.run([sys.executable, "-c", PEAK_GROWTH, "8000", "8000"], capture_output=True, text=True,
                           cwd=REPO, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    found = json.loads(child.stdout)
    assert found["bytes"] < 250_000 and 8000 * 8000 < Image.MAX_IMAGE_PIXELS
    assert found["reason"] == f"too many pixels: 8000x8000 > {images.DEFAULT_MAX_PIXELS}"
    assert found["peak_growth"] < 30_000_000, found


def test_pillow_own_bomb_limit_is_a_reason_too():
    found = images.inspect(png_declaring(60_000, 60_000))  # 3.6 G pixels: Pillow refuses to open it
    assert found.reason.startswith("decompression bomb"), found.reason


def test_max_pixels_is_configurable():
    data = jpeg(size=(200, 100))
    assert images.inspect(data, images.StorePolicy(max_pixels=19_999)).reason.startswith("too many pixels")
    assert images.inspect(data, images.StorePolicy(max_pixels=20_000)).reason is None


def test_pixel_sums_match_numpy():
    image = Image.open(io.BytesIO(jpeg(size=(64, 48), seed=3))).convert("RGB")
    pixels = np.asarray(image).reshape(-1, 3).astype(np.int64)
    sums = images.pixel_sums(image)
    assert sums.count == 64 * 48
    assert list(sums.total) == pixels.sum(axis=0).tolist()
    assert list(sums.squares) == (pixels ** 2).sum(axis=0).tolist()
