"""Property-based fuzzing of the image-validation path: whatever the bytes, ``inspect`` returns a
verdict (a reason, or the facts of a decodable RGB JPEG), never an exception or a huge allocation."""

import io
from unittest import mock

from hypothesis import HealthCheck, assume, given, settings, strategies as st
from PIL import Image, ImageFile

from foodpipe import images
from tests.test_images import jpeg, png_declaring

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = jpeg(size=(96, 64))


def assert_verdict(data: bytes):
    found = images.inspect(data)
    if found.reason is not None:
        assert isinstance(found.reason, str) and found.reason and "\n" not in found.reason
        return found
    stored = Image.open(io.BytesIO(images.stored_bytes(data)))
    stored.load()
    assert (stored.format, stored.mode) == ("JPEG", "RGB")
    assert stored.size == (found.width, found.height) and min(stored.size) >= images.DEFAULT_MIN_SIDE
    return found


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes_get_a_verdict(data):
    assert_verdict(data)


@SETTINGS
@given(st.integers(0, len(VALID) - 1))
def test_truncated_jpegs_are_rejected_or_whole(cut):
    found = assert_verdict(VALID[:cut])
    if found.reason is None:  # only the last bytes (end marker) may go missing without loss
        assert (found.width, found.height) == (96, 64) and cut > len(VALID) - 16


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), min_size=1, max_size=8))
def test_bit_flipped_jpegs_get_a_verdict(flips):
    data = bytearray(VALID)
    for position, mask in flips:
        data[position] ^= mask
    assert_verdict(bytes(data))


@SETTINGS
@given(mode=st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F"]),
       fmt=st.sampled_from(["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"]),
       size=st.tuples(st.integers(1, 80), st.integers(1, 80)))
def test_odd_modes_and_formats_get_a_verdict(mode, fmt, size):
    image = Image.new("RGB", size, (200, 30, 90)).convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):
        assume(False)  # Pillow cannot write this mode in this format: nothing to validate
    found = assert_verdict(buffer.getvalue())
    if min(size) < images.DEFAULT_MIN_SIDE:
        assert found.reason and found.reason.startswith("too small")


@SETTINGS
@given(st.integers(7_000, 2**31 - 1), st.integers(7_000, 2**31 - 1))
def test_huge_declared_dimensions_are_rejected_without_decoding(width, height):
    """No pixel is decoded (``ImageFile.load`` is never called): nothing is allocated for them.
    ``test_images.py`` measures the memory of a real bomb in a child process."""
    decoded = []
    load = ImageFile.ImageFile.load

    def counting_load(image):
        decoded.append(image.size)
        return load(image)

    with mock.patch.object(ImageFile.ImageFile, "load", counting_load):
        found = images.inspect(png_declaring(width, height))
    assert found.reason.startswith(("too many pixels", "decompression bomb")), found.reason
    assert decoded == []
