"""The tf.data input pipeline over what the Beam job wrote."""

import dataclasses
import hashlib
import io
import math
import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from PIL import Image

from beam_pipelines import preprocess
from foodpipe import datasets, schema
from foodpipe.errors import CorruptShards, FoodpipeError, RunFailed
from tfdata import augment, pipeline
from tfdata.config import InputConfig

SMALL = InputConfig(image_size=64, batch_size=8, shuffle_buffer=64)


@pytest.fixture(scope="module")
def dataset(raw_dataset, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("tfdata"))
    preprocess.run(["--input", raw_dataset, "--output", output, "--shard-size-mb", "0.15", "--seed", "1"])
    return output


def collect(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def framed_with_pillow(source: Image.Image, framing: str, size: int, crop_fraction: float) -> np.ndarray:
    """What ``framing`` should show of ``source``, by Pillow: an independent reference."""
    if framing == "crop":
        side = int(min(source.size) * crop_fraction)
        left, top = (source.size[0] - side) // 2, (source.size[1] - side) // 2
        return np.asarray(source.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR))
    if framing == "squash":
        return np.asarray(source.resize((size, size), Image.BILINEAR))
    # The geometry of tf.image.resize_with_pad, as documented: sizes and offsets floored (a 62.25-px
    # wide fit is 62 px at offset 0, not 1: with fine stripes a one-pixel shift is what a
    # per-pixel correlation sees).
    width, height = (side * size / max(source.size) for side in source.size)
    fitted = source.resize((math.floor(width), math.floor(height)), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(fitted, (max(0, math.floor((size - width) / 2)), max(0, math.floor((size - height) / 2))))
    return np.asarray(canvas)


@pytest.mark.parametrize("framing", ["squash", "pad"])
def test_frame_rounds_the_bilinear_resize_to_the_nearest_level(framing):
    rng = np.random.default_rng(0)
    pixels = tf.constant(rng.integers(0, 256, size=(7, 5, 3)), tf.uint8)
    framed = pipeline.frame(pixels, 16, framing).numpy()
    exact = (tf.image.resize_with_pad(pixels, 16, 16) if framing == "pad" else tf.image.resize(pixels, [16, 16]))
    assert framed.dtype == np.uint8
    # Rounded, not truncated (exact halves aside), and never wrapped around: bilinear stays in 0..255.
    assert np.abs(framed.astype(np.float64) - exact.numpy()).max() <= 0.5 + 1e-4


@pytest.mark.parametrize("framing", ["squash", "pad", "crop"])
def test_eval_pipeline_round_trips_labels_and_frames_pixels(dataset, framing):
    in_shard_order = dataclasses.replace(SMALL, cycle_length=1, framing=framing)
    images, labels = collect(pipeline.eval_dataset(dataset, "val", in_shard_order))
    manifest = [r for r in pq.read_table(os.path.join(dataset, schema.MANIFEST_FILE)).to_pylist() if r["split"] == "val"]
    assert images.shape == (len(manifest), 64, 64, 3) and images.dtype == np.uint8
    # Records come in shard order, deterministically: match them to the manifest through the shards.
    _, examples = __import__("tests.conftest", fromlist=["x"]).read_local_dataset(dataset)
    val = [e for e in examples if e["split"] == "val"]
    assert labels.tolist() == [e[schema.LABEL] for e in val]
    for image, example in zip(images, val):
        source = Image.open(io.BytesIO(example[schema.ENCODED])).convert("RGB")
        expected = framed_with_pillow(source, framing, 64, SMALL.eval_crop_fraction).astype(np.float64)
        # TF's and Pillow's resize filters differ in detail; a wrong window, flip or channel order
        # would destroy the correlation, a filter difference does not.
        for channel in range(3):
            assert np.corrcoef(image[..., channel].ravel(), expected[..., channel].ravel())[0, 1] > 0.8
        assert abs(image.mean() - expected.mean()) < 3


def test_eval_is_deterministic_and_train_is_not(dataset):
    first, labels_a = collect(pipeline.eval_dataset(dataset, "val", SMALL))
    second, labels_b = collect(pipeline.eval_dataset(dataset, "val", SMALL))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(labels_a, labels_b)
    train = pipeline.train_dataset(dataset, "train", SMALL)
    one, _ = collect(train)
    two, _ = collect(train)
    assert one.shape == two.shape == (36, 64, 64, 3) and one.dtype == np.uint8
    assert not np.array_equal(one, two)
    mean = np.mean(datasets.load_metadata(dataset)["stats"]["mean"])
    assert abs(one.mean() - mean) < 20  # raw pixels: the model's first layer scales them


def test_train_view_at_full_area_without_augmentation_is_the_eval_view(dataset):
    """One framing: a train view that is not randomized shows exactly what eval and serving show."""
    plain = dataclasses.replace(SMALL, cycle_length=1, crop_area_min=1.0, crop_aspect_max=1.0) \
        .without_augmentation()
    train, train_labels = collect(pipeline.train_dataset(dataset, "val", plain))
    evaluated, eval_labels = collect(pipeline.eval_dataset(dataset, "val", plain))
    order = lambda images, labels: sorted(zip(labels.tolist(), (i.tobytes() for i in images)))  # noqa: E731
    assert order(train, train_labels) == order(evaluated, eval_labels)


@pytest.mark.parametrize("framing", ["squash", "crop"])
@pytest.mark.parametrize("shape", [(100, 200), (300, 150), (64, 64)])
def test_random_window_is_a_random_version_of_the_eval_window(framing, shape):
    config = InputConfig(framing=framing, crop_area_min=0.5, crop_aspect_max=4 / 3)
    eval_h, eval_w = pipeline.eval_window(tf.constant(shape), framing, config.eval_crop_fraction).numpy()[2:]
    tf.random.set_seed(1)
    windows = np.array([pipeline.random_window(tf.constant(shape), config).numpy() for _ in range(200)])
    y, x, h, w = windows.T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= shape[0]).all() and (x + w <= shape[1]).all()
    area = h * w / (eval_h * eval_w)
    assert area.min() > 0.5 * 0.9 and area.max() <= 1.0 + 0.05  # windows are clipped to the image
    stretch = (w / h) / (eval_w / eval_h)
    assert stretch.min() > 3 / 4 * 0.95 and stretch.max() < 4 / 3 * 1.05
    assert len(set(map(tuple, windows))) > 100  # random: position, size and shape vary
    fixed = dataclasses.replace(config, crop_area_min=1.0, crop_aspect_max=1.0)
    same_size = pipeline.random_window(tf.constant(shape), fixed).numpy()[2:]
    assert same_size.tolist() == [eval_h, eval_w]


def test_augmentation_switches_and_probability():
    plain = InputConfig(image_size=64, batch_size=8).without_augmentation()
    assert not plain.any_augmentation
    batch = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    augmented = augment.Augmenter(plain)(batch)
    assert augmented.dtype == np.uint8
    np.testing.assert_array_equal(augmented, batch)
    noisy = augment.Augmenter(InputConfig(noise_std=8.0, augment_probability=1.0, flip=False, rotate_degrees=0,
                                          brightness_contrast=0, blur=False))
    assert 6 < float(np.std(noisy(batch).astype(np.float32) - batch)) < 10
    flipped = augment.Augmenter(InputConfig(flip=True, rotate_degrees=0, brightness_contrast=0, blur=False))
    out = flipped(np.repeat(batch, 16, axis=0))
    mirrored = [np.array_equal(o, b[:, ::-1]) for o, b in zip(out, np.repeat(batch, 16, axis=0))]
    assert 16 < sum(mirrored) < 48  # about half of 64


def test_kernels_equal_their_numpy_references():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    mean, std = np.float32([120.5, 110.25, 99.0]), np.float32([55.0, 60.5, 70.25])
    inv_std = (1 / std).astype(np.float32)
    np.testing.assert_allclose(augment.scale(image, mean, inv_std), (image - mean.astype(np.float64)) / std,
                               rtol=1e-5, atol=1e-5)
    images = rng.integers(0, 256, size=(3, 17, 23, 3), dtype=np.uint8)
    table = rng.standard_normal(images[0].size * 2).astype(np.float32)
    alphas, betas = np.float32([1, 1.2, 0.8]), np.float32([0, -30, 40])
    offsets, sigmas = np.array([0, 990, images[0].size]), np.float32([0, 8, 3])
    out = np.empty(images.shape, np.uint8)
    augment.photometric_kernel(images, alphas, betas, table, offsets, sigmas, out)
    expected = augment.photometric_numpy(images, alphas, betas, table, offsets, sigmas)
    assert np.abs(out.astype(int) - expected).max() <= 1 and (out == expected).mean() > 0.99
    np.testing.assert_array_equal(out[0], images[0])  # contrast 1, brightness 0, no noise: unchanged


def test_rotation_and_blur_do_what_they_say():
    rng = np.random.default_rng(5)
    batch = rng.integers(0, 256, size=(8, 33, 33, 3), dtype=np.uint8)
    only = dict(flip=False, rotate_degrees=0, brightness_contrast=0, noise_std=0, blur=False, augment_probability=1.0)
    rotated = augment.Augmenter(InputConfig(**{**only, "rotate_degrees": 30.0}))(batch)
    # Turned about the centre by a drawn angle: the centre pixel stays, the rest moves (little for a small angle).
    np.testing.assert_allclose(rotated[:, 16, 16].astype(int), batch[:, 16, 16].astype(int), atol=1)
    assert not any(np.array_equal(r, b) for r, b in zip(rotated, batch))
    assert np.median([np.abs(r.astype(int) - b).mean() for r, b in zip(rotated, batch)]) > 20
    blurred = augment.Augmenter(InputConfig(**{**only, "blur": True}))(batch)
    assert np.mean(blurred.astype(np.float32)) == pytest.approx(np.mean(batch.astype(np.float32)), abs=2)
    assert all(np.std(o.astype(np.float32)) < 0.8 * np.std(b.astype(np.float32)) for o, b in zip(blurred, batch))


def image_hashes(ds):
    images, _ = collect(ds)
    return [hashlib.sha1(image.tobytes()).hexdigest() for image in images]


@pytest.mark.parametrize("by_file", [True, False])
def test_input_context_shards_are_disjoint_and_complete(dataset, by_file):
    """By file when there are enough shards, by record when there are not."""
    metadata = datasets.load_metadata(dataset)
    split = "train"
    shards = len(metadata["splits"][split]["shards"])
    pipelines = 2 if by_file else shards + 1
    assert (shards >= pipelines) == by_file
    everything = sorted(image_hashes(pipeline.eval_dataset(dataset, split, SMALL)))
    parts = []
    for index in range(pipelines):
        context = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=index,
                                             num_replicas_in_sync=1)
        part = image_hashes(pipeline.eval_dataset(dataset, split, SMALL, context))
        assert part, f"pipeline {index} got nothing"
        parts += part
    assert sorted(parts) == everything and len(set(everything)) == len(everything)


def test_per_replica_batch(dataset):
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=4)
    images, _ = next(iter(pipeline.train_dataset(dataset, "train", SMALL, context)))
    assert images.shape[0] == SMALL.batch_size // 4


@pytest.mark.parametrize("multiple", [1, 7, 16])
def test_eval_padding_fills_the_split_to_a_multiple_with_weightless_blanks(dataset, multiple):
    count = datasets.load_metadata(dataset)["splits"]["val"]["count"]
    images, labels = collect(pipeline.eval_dataset(dataset, "val", SMALL, pad_to_multiple=multiple))
    assert len(labels) % multiple == 0 and len(labels) - multiple < count <= len(labels)
    assert (labels[:count] >= 0).all() and (labels[count:] == pipeline.PADDING_LABEL).all()
    assert not images[count:].any()
    plain, plain_labels = collect(pipeline.eval_dataset(dataset, "val", SMALL))
    np.testing.assert_array_equal(images[:count], plain)
    np.testing.assert_array_equal(labels[:count], plain_labels)


def test_repeated_train_batches_are_all_full(dataset):
    count = datasets.load_metadata(dataset)["splits"]["train"]["count"]
    batch = 5 if count % 5 else 7
    assert count % batch  # an endless stream, batched: no partial batch at an epoch's end
    sizes = [len(y) for _, y in pipeline.train_dataset(dataset, "train", dataclasses.replace(SMALL, batch_size=batch),
                                                      repeat=True).take(3 * count // batch)]
    assert set(sizes) == {batch}


def test_the_endless_train_stream_has_one_order_and_a_resumed_one_continues_it(dataset):
    """The trainer's stream depends on the seed alone, so a resumed run that skips what was consumed
    sees what the first run would have seen next (the view is fixed here so images can be compared)."""
    fixed = dataclasses.replace(SMALL, crop_area_min=1.0, crop_aspect_max=1.0).without_augmentation()

    def batches(config, skip=0, count=10):
        stream = pipeline.train_dataset(dataset, "train", config, repeat=True, skip=skip).take(count)
        return [(x.numpy(), y.numpy()) for x, y in stream]

    first = batches(fixed)
    np.testing.assert_array_equal(np.concatenate([y for _, y in first]),
                                  np.concatenate([y for _, y in batches(fixed)]))  # the same order twice
    resumed = batches(fixed, skip=4 * fixed.batch_size, count=6)
    for (image, label), (expected_image, expected_label) in zip(resumed, first[4:]):
        np.testing.assert_array_equal(label, expected_label)
        np.testing.assert_array_equal(image, expected_image)
    other_seed = batches(dataclasses.replace(fixed, seed=1))
    assert not np.array_equal(np.concatenate([y for _, y in first]), np.concatenate([y for _, y in other_seed]))


def copy_dataset(source, destination):
    shutil.copytree(source, destination)
    return str(destination)


def test_corrupt_shard_is_named_or_skipped(dataset, tmp_path):
    broken = copy_dataset(dataset, tmp_path / "broken")
    metadata = datasets.load_metadata(broken)
    victim = os.path.join(broken, metadata["splits"]["val"]["shards"][0])
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(victim, "wb").write(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        collect(pipeline.eval_dataset(broken, "val", SMALL))
    error = pipeline.explain_data_loss(broken, "val")
    assert victim in str(error) and "corrupted record" in str(error)
    assert isinstance(error, CorruptShards) and [path for path, _ in error.shards] == [victim]
    assert isinstance(pipeline.explain_data_loss(dataset, "val"), RunFailed)  # intact: no shard named
    assert not isinstance(pipeline.explain_data_loss(dataset, "val"), CorruptShards)
    _, labels = collect(pipeline.eval_dataset(broken, "val", InputConfig(image_size=64, batch_size=8,
                                                                         skip_corrupt=True)))
    assert 0 < len(labels) < metadata["splits"]["val"]["count"]


def test_bad_datasets_fail_clearly(dataset, tmp_path):
    incomplete = copy_dataset(dataset, tmp_path / "incomplete")
    os.remove(os.path.join(incomplete, schema.METADATA_FILE))
    with pytest.raises(FoodpipeError, match="dataset incomplete"):
        pipeline.train_dataset(incomplete, "train", SMALL)
    with pytest.raises(FoodpipeError, match="larger than every image"):
        pipeline.train_dataset(dataset, "train", InputConfig(image_size=600))
    no_test = copy_dataset(dataset, tmp_path / "no_test")
    metadata = json.load(open(os.path.join(no_test, schema.METADATA_FILE)))
    metadata["splits"]["test"] = {"count": 0, "shards": []}
    json.dump(metadata, open(os.path.join(no_test, schema.METADATA_FILE), "w"))
    with pytest.raises(FoodpipeError, match="has no shards"):
        pipeline.eval_dataset(no_test, "test", SMALL)
    with pytest.raises(FoodpipeError, match="image_size must be"):
        InputConfig(image_size=4)
