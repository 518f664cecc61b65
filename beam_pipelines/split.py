"""Deterministic, stratified train/val/test assignment.

Within each class, images are ordered by a keyed hash of their id (then the id itself), and the
first ``round(n * f_train)`` go to train, up to ``round(n * (f_train + f_val))`` to val, the rest to
test. The result depends only on the ids, the fractions and the seed: not on the runner, the
number of workers or the order the files were listed in.
"""

import hashlib

from foodpipe.errors import FoodpipeError
from foodpipe.schema import TEST, TRAIN, VAL


def stable_hash(seed: int, purpose: str, key: str) -> int:
    """A 64-bit hash that is the same in every process (unlike ``hash()``)."""
    digest = hashlib.blake2b(f"{seed}\x00{purpose}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise FoodpipeError(f"--split must be three numbers like 0.75,0.2,0.05, got {text!r}") from None
    if len(values) != 3:
        raise FoodpipeError(f"--split needs three fractions (train,val,test), got {len(values)} in {text!r}")
    if any(v < 0 for v in values):
        raise FoodpipeError(f"--split fractions must not be negative, got {text!r}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise FoodpipeError(f"--split fractions must sum to 1, got {text!r} (sum {sum(values):g})")
    if values[0] == 0:
        raise FoodpipeError(f"--split needs a non-empty train split (stats are computed on it), got {text!r}")
    return values


def split_boundaries(count: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """Ranks below the first boundary are train, below the second val, the rest test."""
    first = round(count * fractions[0])
    second = round(count * (fractions[0] + fractions[1]))
    return first, max(first, min(second, count))


def assign(ids: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """``{image_id: split}`` for the ids of one class."""
    ordered = sorted(ids, key=lambda image_id: (stable_hash(seed, "split", image_id), image_id))
    first, second = split_boundaries(len(ordered), fractions)
    return {
        image_id: TRAIN if rank < first else VAL if rank < second else TEST
        for rank, image_id in enumerate(ordered)
    }
