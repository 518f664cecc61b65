import random

import apache_beam as beam
import numpy as np
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from foodpipe import images
from beam_pipelines.stats import ChannelStatsFn, mean_std


def random_images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, size=(int(rng.integers(20, 60)), int(rng.integers(20, 60)), 3), dtype=np.uint8)
        for _ in range(count)
    ]


def test_combiner_gives_the_same_exact_sums_in_any_merge_order():
    sums = [images.pixel_sums(Image.fromarray(a)) for a in random_images(40)]
    combine = ChannelStatsFn()
    expected = combine.extract_output(combine.merge_accumulators(
        [combine.add_input(combine.create_accumulator(), s) for s in sums]))
    for trial in range(5):
        shuffled = random.Random(trial).sample(sums, len(sums))
        cut = sorted(random.Random(trial).sample(range(1, len(sums)), 4))
        parts = [shuffled[a:b] for a, b in zip([0] + cut, cut + [len(sums)])]
        accumulators = []
        for part in parts:
            accumulator = combine.create_accumulator()
            for s in part:
                accumulator = combine.add_input(accumulator, s)
            accumulators.append(accumulator)
        assert combine.extract_output(combine.merge_accumulators(reversed(accumulators))) == expected


def test_mean_and_std_match_numpy():
    arrays = random_images(25, seed=1)
    total = images.ZERO_SUMS
    for a in arrays:
        total = total + images.pixel_sums(Image.fromarray(a))
    pixels = np.concatenate([a.reshape(-1, 3) for a in arrays]).astype(np.float64)
    mean, std = mean_std(total)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=0, atol=1e-9)


def test_combine_globally_in_a_pipeline():
    sums = [images.pixel_sums(Image.fromarray(a)) for a in random_images(10, seed=2)]
    expected = images.ZERO_SUMS
    for s in sums:
        expected = expected + s
    with test_pipeline.TestPipeline(runner="DirectRunner") as p:
        result = p | beam.Create(sums) | beam.CombineGlobally(ChannelStatsFn())
        assert_that(result, equal_to([expected]))
