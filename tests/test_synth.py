import io
import os

from PIL import Image

from foodpipe.tools import synth
from tests.conftest import foodpipe


def test_same_seed_same_bytes_and_food101_layout(tmp_path):
    for name in ("a", "b"):
        synth.generate(synth.SynthConfig(str(tmp_path / name), classes=2, per_class=3, seed=11, corrupt=3))
    files_a = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "a")
                     for d, _, fs in os.walk(tmp_path / "a") for f in fs)
    assert files_a == sorted(os.path.relpath(os.path.join(d, f), tmp_path / "b")
                             for d, _, fs in os.walk(tmp_path / "b") for f in fs)
    for relative in files_a:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    assert (tmp_path / "a" / "meta" / "classes.txt").read_text().split() == ["strawberry_shortcake", "fried_rice"]
    assert len(os.listdir(tmp_path / "a" / "images" / "strawberry_shortcake")) + \
        len(os.listdir(tmp_path / "a" / "images" / "fried_rice")) == 2 * 3 + 3


def test_images_are_food101_sized_with_some_odd_formats(tmp_path):
    synth.generate(synth.SynthConfig(str(tmp_path), classes=2, per_class=40, seed=2))
    formats = set()
    for directory, _, files in os.walk(tmp_path / "images"):
        for name in files:
            image = Image.open(io.BytesIO(open(os.path.join(directory, name), "rb").read()))
            formats.add((image.format, image.mode))
            assert max(image.size) == synth.LONG_SIDE
            assert synth.SHORT_SIDE_RANGE[0] <= min(image.size) <= synth.SHORT_SIDE_RANGE[1]
    assert ("JPEG", "RGB") in formats and len(formats) > 1


def test_bad_arguments_give_one_line(tmp_path):
    result = foodpipe("synth", str(tmp_path), "--classes", "0", "--per-class", "3")
    assert result.returncode == 2 and "--classes must be between" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_class_has_its_own_style_robust_to_rotation():
    styles = [synth._class_style(index) for index in range(101)]
    assert len(set(styles)) == 101
    for a in range(101):
        for b in range(a + 1, 101):
            (angle_a, period_a, shape_a, _), (angle_b, period_b, shape_b, _) = styles[a], styles[b]
            if shape_a == shape_b and period_a == period_b:  # then the stripe angle must tell them apart
                gap = abs(angle_a - angle_b) % 180
                assert min(gap, 180 - gap) >= 30
