"""The recipe's switches for training from scratch on little data: soft targets (label smoothing,
mixup, CutMix), the automatic augmentation policies, decoupled weight decay, the weights' moving
average, and flip test-time augmentation. Each does what its help says, and is off by default."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from foodpipe.config import from_flat
from foodpipe.errors import FoodpipeError
from tfdata import augment, policy
from tfdata.config import InputConfig
from trainer import evaluate, loop
from trainer.config import TrainConfig
from trainer.mixing import Mixing
from trainer.train import make_optimizer

CLASSES = 8


def train_config(**values) -> TrainConfig:
    """A TrainConfig from flat settings, as a command line or a config file gives them."""
    return from_flat(TrainConfig, values)


def constant_batch():
    """Image i is all ``20 * i + 10``, label i: a mix of two images shows its weights in both the
    pixels and the targets."""
    labels = tf.range(CLASSES, dtype=tf.int64)
    images = tf.cast(tf.broadcast_to(tf.reshape(labels * 20 + 10, [-1, 1, 1, 1]), [CLASSES, 16, 16, 3]), tf.uint8)
    return images, labels


def test_label_smoothing_spreads_the_given_share_over_every_class():
    images, labels = constant_batch()
    same, targets = Mixing(CLASSES, label_smoothing=0.2)(images, labels, step=0, replica=0)
    np.testing.assert_array_equal(same, images)
    expected = np.full((CLASSES, CLASSES), 0.2 / CLASSES) + np.eye(CLASSES) * 0.8
    np.testing.assert_allclose(targets, expected, rtol=1e-6)
    assert not Mixing(CLASSES).soft and Mixing(CLASSES, mixup=0.2).soft


def partners(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of mixed one-hot targets: (the row's own weight, the partner's class)."""
    own = targets[np.arange(CLASSES), np.arange(CLASSES)]
    other = targets.copy()
    other[np.arange(CLASSES), np.arange(CLASSES)] = 0
    partner = np.where(other.max(axis=1) > 0, other.argmax(axis=1), np.arange(CLASSES))
    return own, partner


def test_mixup_blends_pixels_and_targets_by_one_weight():
    images, labels = constant_batch()
    mixed, targets = Mixing(CLASSES, mixup=1.0, seed=3)(images, labels, step=5, replica=0)
    targets = targets.numpy()
    np.testing.assert_allclose(targets.sum(axis=1), 1, rtol=1e-6)
    own, partner = partners(targets)
    paired = partner != np.arange(CLASSES)  # an image the permutation left in place is mixed with itself
    assert paired.sum() >= 2 and len(set(np.round(own[paired], 5))) == 1  # one lambda for the batch
    assert 0 < own[paired][0] < 1
    assert sorted(partner) == list(range(CLASSES))  # a permutation
    expected = np.round(own * (20 * np.arange(CLASSES) + 10) + (1 - own) * (20 * partner + 10))
    np.testing.assert_array_equal(mixed.numpy()[:, 0, 0, 0], expected)
    assert (mixed.numpy() == mixed.numpy()[:, :1, :1, :1]).all()  # blended everywhere alike


def test_cutmix_pastes_a_box_whose_area_is_the_partners_target_share():
    images, labels = constant_batch()
    mixed, targets = Mixing(CLASSES, cutmix=1.0, seed=1)(images, labels, step=2, replica=0)
    own, partner = partners(targets.numpy())
    values = 20 * np.arange(CLASSES) + 10
    for index in range(CLASSES):
        if partner[index] == index:
            continue
        pasted = mixed.numpy()[index, :, :, 0] == values[partner[index]]
        kept = mixed.numpy()[index, :, :, 0] == values[index]
        assert (pasted | kept).all()  # pixels come whole from one image or the other
        rows, cols = np.nonzero(pasted)
        if rows.size:  # a rectangle
            assert pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        assert own[index] == pytest.approx(kept.mean(), abs=1e-6)


def test_mixing_is_seeded_by_run_step_and_replica():
    images, labels = constant_batch()
    mixing = Mixing(CLASSES, mixup=0.4, cutmix=1.0, seed=7)
    first = [mixing(images, labels, step=4, replica=0)[1].numpy() for _ in range(2)]
    np.testing.assert_array_equal(*first)  # a resumed run mixes as the first one did
    others = [mixing(images, labels, step=5, replica=0)[1], mixing(images, labels, step=4, replica=1)[1],
              Mixing(CLASSES, mixup=0.4, cutmix=1.0, seed=8)(images, labels, step=4, replica=0)[1]]
    assert all(not np.allclose(first[0], other) for other in others)


@pytest.mark.parametrize("operation", policy.OPERATIONS, ids=lambda op: op.__name__)
def test_policy_operations_keep_the_image_at_strength_zero_and_change_it_above(operation):
    rng = np.random.default_rng(0)
    image = rng.integers(30, 220, (40, 56, 3), dtype=np.uint8)
    image[:20] //= 2  # not flat, not symmetric
    for magnitude in (-1.0, -0.4, 0.0, 0.6, 1.0):
        out = operation(image, magnitude)
        assert out.shape == image.shape and out.dtype == np.uint8
    if operation.__name__ in ("identity",):
        return
    if operation.__name__ in ("equalize", "autocontrast"):  # no strength (as in RandAugment)
        assert not np.array_equal(operation(image, 0.0), image)
        return
    np.testing.assert_array_equal(operation(image, 0.0), image)
    assert not np.array_equal(operation(image, 0.9), image)


def test_policies_draw_their_number_of_operations_and_strengths():
    rng = np.random.default_rng(0)
    none, trivial, rand = (policy.draw(rng, name, 500) for name in ("none", "trivial", "rand"))
    assert none[0].shape == (500, 0)
    assert trivial[0].shape == (500, 1) and set(trivial[0].ravel()) == set(range(len(policy.OPERATIONS)))
    assert np.abs(trivial[1]).max() <= 1 and np.abs(trivial[1]).std() > 0.2  # a strength per image
    assert rand[0].shape == (500, policy.RAND_OPERATIONS)
    np.testing.assert_allclose(np.abs(rand[1]), policy.RAND_MAGNITUDE)


def test_augmenter_applies_the_policy_and_only_when_asked():
    images = np.random.default_rng(1).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    off = InputConfig(image_size=32).without_augmentation()
    assert not off.any_augmentation
    on = InputConfig(image_size=32, flip=False, rotate_degrees=0, brightness_contrast=0, auto_augment="rand")
    assert on.any_augmentation
    out = augment.Augmenter(on)(images)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert sum(not np.array_equal(a, b) for a, b in zip(out, images)) >= 12  # two operations each
    with pytest.raises(FoodpipeError, match="unknown auto_augment 'auto'"):
        InputConfig(auto_augment="auto")


def tiny_model():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="dense")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(hidden))


def apply_zero_gradients(model, steps: int):
    for _ in range(steps):
        model.optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])


def test_weight_decay_shrinks_kernels_but_spares_biases_and_batchnorm():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    for variable in model.trainable_variables:
        variable.assign(tf.ones_like(variable))
    config = train_config(data="d", lr=0.1, weight_decay=0.5, lr_schedule="constant", warmup_epochs=0, epochs=1)
    model.compile(optimizer=make_optimizer(config, model, steps_per_epoch=1))
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    apply_zero_gradients(model, 1)  # no gradient: only the decay moves weights
    for variable in model.trainable_variables:
        expected = 1 - 0.1 * 0.5 if len(variable.shape) > 1 else 1.0
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6, err_msg=variable.path)
    plain = make_optimizer(train_config(data="d"), model, steps_per_epoch=1)
    assert type(plain) is keras.optimizers.Adam and not plain.weight_decay and not plain.use_ema


def test_ema_weights_are_validated_and_exported_and_training_keeps_the_raw_ones():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    config = train_config(data="d", ema=0.5, lr_schedule="constant", warmup_epochs=0, epochs=1)
    model.compile(optimizer=make_optimizer(config, model, steps_per_epoch=1))
    model.optimizer.build(model.trainable_variables)
    start = [v.numpy().copy() for v in model.trainable_variables]
    apply_zero_gradients(model, 1)  # Keras' first step copies the weights into the average
    for variable in model.trainable_variables:
        variable.assign(variable + 1.0)  # the raw weights move away from the average
    apply_zero_gradients(model, 1)
    raw = model.get_weights()
    averaged = loop.evaluated_weights(model)
    np.testing.assert_array_equal(model.get_weights()[0], raw[0])  # swapped back after
    trainable = {id(v): i for i, v in enumerate(model.weights)}
    for variable, before in zip(model.trainable_variables, start):
        index = trainable[id(variable)]
        # One update of momentum 0.5 from the start towards the raw weights (start + 1).
        np.testing.assert_allclose(averaged[index], before + 0.5, rtol=1e-5)
    with loop.averaged_weights(model):
        np.testing.assert_allclose(model.get_weights()[0], averaged[0])
    no_ema = tiny_model()
    no_ema.compile(optimizer="adam")
    np.testing.assert_array_equal(loop.evaluated_weights(no_ema)[0], no_ema.get_weights()[0])


def test_flip_tta_averages_an_image_and_its_mirror():
    inputs = keras.Input((4, 6, 3))
    # A classifier that looks at the left half only: its answer changes with a flip.
    left = keras.layers.Lambda(lambda x: tf.reduce_mean(x[:, :, :3, 0], axis=[1, 2]))(inputs)
    classifier = keras.Model(inputs, keras.layers.Lambda(lambda v: tf.stack([tf.sigmoid(v), 1 - tf.sigmoid(v)], 1))(
        left))
    images = tf.constant(np.random.default_rng(0).normal(size=(5, 4, 6, 3)), tf.float32)
    plain = evaluate.classify(classifier, images)
    mirrored = evaluate.classify(classifier, tf.reverse(images, axis=[2]))
    assert not np.allclose(plain, mirrored)
    np.testing.assert_allclose(evaluate.classify(classifier, images, "flip"), (plain + mirrored) / 2, rtol=1e-6)


@pytest.mark.parametrize("bad,message", [
    ({"weight_decay": -0.1}, "weight_decay must not be negative"),
    ({"label_smoothing": 1.0}, "label_smoothing must be in"),
    ({"mixup": -1}, "mixup must not be negative"),
    ({"cutmix": -1}, "cutmix must not be negative"),
    ({"ema": 1.0}, "ema must be in"),
    ({"auto_augment": "strong"}, "unknown auto_augment 'strong'"),
])
def test_recipe_flags_are_checked(bad, message):
    with pytest.raises(FoodpipeError, match=message):
        train_config(data="d", **bad)


def test_recipe_flags_are_logged_as_params():
    params = train_config(data="d", weight_decay=0.05, label_smoothing=0.1, mixup=0.2, cutmix=1.0, ema=0.99,
                         auto_augment="trivial").params()
    assert {key: params[key] for key in ("weight_decay", "label_smoothing", "mixup", "cutmix", "ema",
                                         "auto_augment")} == {"weight_decay": 0.05, "label_smoothing": 0.1,
                                                              "mixup": 0.2, "cutmix": 1.0, "ema": 0.99,
                                                              "auto_augment": "trivial"}
