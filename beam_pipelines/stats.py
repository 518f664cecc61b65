"""Global per-channel mean and std, exact: a CombineFn that only ever adds integer partial sums."""

import math

import apache_beam as beam

from foodpipe.images import ZERO_SUMS, PixelSums


def mean_std(sums: PixelSums) -> tuple[list[float], list[float]]:
    """Mean and population std per channel, in 0-255 units.

    The variance is formed from exact integers, ``(n * sum(x^2) - sum(x)^2) / n^2``, so the only
    rounding is the final division and square root.
    """
    if sums.count == 0:
        raise ValueError("no pixels to compute statistics on")
    n = sums.count
    means = [total / n for total in sums.total]
    stds = [math.sqrt((n * sq - total * total) / (n * n)) for total, sq in zip(sums.total, sums.squares)]
    return means, stds


class ChannelStatsFn(beam.CombineFn):
    """Combines ``PixelSums`` in any order and grouping to the same exact total."""

    def create_accumulator(self) -> PixelSums:
        return ZERO_SUMS

    def add_input(self, accumulator: PixelSums, sums: PixelSums) -> PixelSums:
        return accumulator + sums

    def merge_accumulators(self, accumulators) -> PixelSums:
        total = ZERO_SUMS
        for accumulator in accumulators:
            total = total + accumulator
        return total

    def extract_output(self, accumulator: PixelSums) -> PixelSums:
        return accumulator
