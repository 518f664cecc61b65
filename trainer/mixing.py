"""Soft training targets: label smoothing, mixup and CutMix, inside the train step.

Mixing needs the batch (pairs of images), so it runs on the replica's batch in the step, as graph
ops, after the input pipeline's per-image augmentation. Its randomness is stateless, seeded with
the run's seed, the optimizer's step and the replica: a resumed run mixes its batches exactly as
the uninterrupted run would have.

- label smoothing ``s``: the target is ``1 - s`` on the label and ``s / classes`` spread over all;
- mixup ``alpha`` (Zhang et al., 2018): the batch is blended with a permutation of itself,
  ``lam * x + (1 - lam) * x[perm]``, ``lam ~ Beta(alpha, alpha)``, and so are the targets;
- CutMix ``alpha`` (Yun et al., 2019): a box of ``1 - lam`` of the area is pasted from the permuted
  batch; the targets are mixed by the box's real area (after clipping at the border).

With both on, each batch gets one of the two, half the time each (as timm does).
"""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Mixing:
    num_classes: int
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha); 0 off
    cutmix: float = 0.0  # Beta(alpha, alpha); 0 off
    seed: int = 0

    @property
    def soft(self) -> bool:
        """Whether targets differ from the plain labels (else the trainer keeps the sparse loss)."""
        return self.label_smoothing > 0 or self.mixup > 0 or self.cutmix > 0

    def targets(self, labels):
        """Smoothed one-hot targets ``[batch, classes]`` of integer labels."""
        one_hot = tf.one_hot(labels, self.num_classes, dtype=tf.float32)
        return one_hot * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes

    def __call__(self, images, labels, step, replica):
        """``(images, targets)`` of one replica's batch at optimizer step ``step``."""
        targets = self.targets(labels)
        if not (self.mixup > 0 or self.cutmix > 0):
            return images, targets
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.cast(self.seed, tf.int64), tf.cast(step, tf.int64) * 1024 + tf.cast(replica, tf.int64)]), 4)
        permutation = tf.argsort(tf.random.stateless_uniform([tf.shape(images)[0]], seeds[0]))
        if self.mixup > 0 and self.cutmix > 0:
            return tf.cond(tf.random.stateless_uniform([], seeds[1]) < 0.5,
                           lambda: mixup(images, targets, permutation, beta(seeds[2], self.mixup)),
                           lambda: cutmix(images, targets, permutation, beta(seeds[2], self.cutmix), seeds[3]))
        if self.mixup > 0:
            return mixup(images, targets, permutation, beta(seeds[2], self.mixup))
        return cutmix(images, targets, permutation, beta(seeds[2], self.cutmix), seeds[3])


def beta(seed, alpha: float):
    """One draw of Beta(alpha, alpha), from two Gamma(alpha) draws."""
    draws = tf.random.stateless_gamma([2], seed, alpha=alpha)
    return draws[0] / tf.maximum(draws[0] + draws[1], 1e-12)


def mixup(images, targets, permutation, lam):
    """uint8 images blended (rounded back to uint8) and their targets blended alike."""
    blended = lam * tf.cast(images, tf.float32) + (1.0 - lam) * tf.cast(tf.gather(images, permutation), tf.float32)
    return tf.cast(tf.round(blended), images.dtype), lam * targets + (1.0 - lam) * tf.gather(targets, permutation)


def cutmix(images, targets, permutation, lam, seed):
    """A box of about ``1 - lam`` of the area, centred anywhere, taken from the permuted images; the
    targets weighted by the box's area once clipped to the image."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    side = tf.sqrt(1.0 - lam)
    box_h = tf.cast(tf.round(side * tf.cast(height, tf.float32)), tf.int32)
    box_w = tf.cast(tf.round(side * tf.cast(width, tf.float32)), tf.int32)
    centre = tf.random.stateless_uniform([2], seed)
    centre_y = tf.cast(centre[0] * tf.cast(height, tf.float32), tf.int32)
    centre_x = tf.cast(centre[1] * tf.cast(width, tf.float32), tf.int32)
    top, bottom = tf.maximum(centre_y - box_h // 2, 0), tf.minimum(centre_y + (box_h + 1) // 2, height)
    left, right = tf.maximum(centre_x - box_w // 2, 0), tf.minimum(centre_x + (box_w + 1) // 2, width)
    rows, cols = tf.range(height), tf.range(width)
    inside = ((rows >= top) & (rows < bottom))[:, None] & ((cols >= left) & (cols < right))[None, :]
    pasted = tf.where(inside[None, :, :, None], tf.gather(images, permutation), images)
    kept = 1.0 - tf.cast((bottom - top) * (right - left), tf.float32) / tf.cast(height * width, tf.float32)
    return pasted, kept * targets + (1.0 - kept) * tf.gather(targets, permutation)
