"""Global per-channel mean and std, exact: from integer sums (``images.PixelSums``) that shard writers
add per shard and the job adds over the train shards, in any order."""

import math

from foodpipe.images import PixelSums


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
