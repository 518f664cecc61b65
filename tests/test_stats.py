import random

import numpy as np
from PIL import Image

from foodpipe import images
from beam_pipelines.stats import mean_std


def random_images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, size=(int(rng.integers(20, 60)), int(rng.integers(20, 60)), 3), dtype=np.uint8)
        for _ in range(count)
    ]


def test_pixel_sums_add_to_the_same_exact_total_in_any_order_and_grouping():
    """Shard writers sum their images, the gathering step sums the shards: any cut of the images
    into shards, in any order, gives the same total."""
    sums = [images.pixel_sums(Image.fromarray(a)) for a in random_images(40)]
    expected = sum(sums, images.ZERO_SUMS)
    assert expected.count == sum(s.count for s in sums) and expected != images.ZERO_SUMS
    for trial in range(5):
        shuffled = random.Random(trial).sample(sums, len(sums))
        cut = sorted(random.Random(trial).sample(range(1, len(sums)), 4))
        parts = [sum(shuffled[a:b], images.ZERO_SUMS) for a, b in zip([0] + cut, cut + [len(sums)])]
        assert sum(reversed(parts), images.ZERO_SUMS) == expected


def test_mean_and_std_match_numpy():
    arrays = random_images(25, seed=1)
    total = images.ZERO_SUMS
    for a in arrays:
        total = total + images.pixel_sums(Image.fromarray(a))
    pixels = np.concatenate([a.reshape(-1, 3) for a in arrays]).astype(np.float64)
    mean, std = mean_std(total)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=0, atol=1e-9)
