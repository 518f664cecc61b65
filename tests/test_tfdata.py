"""The tf.data input pipeline over what the Beam job wrote."""

import dataclasses
import hashlib
import io
import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from PIL import Image

from beam_pipelines import preprocess
from foodpipe import schema
from foodpipe.errors import FoodpipeError
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


def test_eval_pipeline_round_trips_labels_and_pixels(dataset):
    metadata = pipeline.load_metadata(dataset)
    in_shard_order = dataclasses.replace(SMALL, cycle_length=1)
    images, labels = collect(pipeline.make_dataset(dataset, "val", in_shard_order))
    manifest = [r for r in pq.read_table(os.path.join(dataset, schema.MANIFEST_FILE)).to_pylist() if r["split"] == "val"]
    assert images.shape == (len(manifest), 64, 64, 3) and images.dtype == np.float32
    # Records come in shard order, deterministically: match them to the manifest through the shards.
    _, examples = __import__("tests.conftest", fromlist=["x"]).read_local_dataset(dataset)
    val = [e for e in examples if e["split"] == "val"]
    assert labels.tolist() == [e[schema.LABEL] for e in val]
    mean, std = np.array(metadata["stats"]["mean"]), np.array(metadata["stats"]["std"])
    for image, example in zip(images, val):
        source = Image.open(io.BytesIO(example[schema.ENCODED])).convert("RGB")
        side = int(min(source.size) * SMALL.eval_crop_fraction)
        left, top = (source.size[0] - side) // 2, (source.size[1] - side) // 2
        expected = np.asarray(source.crop((left, top, left + side, top + side)).resize((64, 64), Image.BILINEAR),
                              np.float64)
        restored = image * std + mean
        # TF's and Pillow's resize filters differ in detail; a wrong crop, flip or channel order
        # would destroy the correlation, a filter difference does not.
        for channel in range(3):
            assert np.corrcoef(restored[..., channel].ravel(), expected[..., channel].ravel())[0, 1] > 0.8
        assert abs(restored.mean() - expected.mean()) < 3


def test_eval_is_deterministic_and_train_is_not(dataset):
    first, labels_a = collect(pipeline.make_dataset(dataset, "val", SMALL))
    second, labels_b = collect(pipeline.make_dataset(dataset, "val", SMALL))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(labels_a, labels_b)
    train = pipeline.make_dataset(dataset, "train", SMALL)
    one, _ = collect(train)
    two, _ = collect(train)
    assert one.shape == two.shape == (36, 64, 64, 3)
    assert not np.array_equal(one, two)
    assert abs(one.mean()) < 0.5 and 0.5 < one.std() < 1.5  # standardized with the train statistics


def test_augmentation_switches_and_probability(dataset):
    plain = InputConfig(image_size=64, batch_size=8, crop_area=(1.0, 1.0), crop_aspect=(0.01, 100.0)) \
        .without_augmentation()
    assert not plain.any_augmentation
    augmenter = augment.Augmenter(plain, [100, 110, 120], [50, 60, 70])
    batch = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(augmenter(batch), augment.scale_numpy(batch, np.float32([100, 110, 120]),
                                                                    np.float32([50, 60, 70])), rtol=1e-5, atol=1e-5)
    noisy = augment.Augmenter(InputConfig(noise_std=8.0, augment_probability=1.0, flip=False, rotate_degrees=0,
                                          brightness_contrast=0, blur=False), [0, 0, 0], [1, 1, 1])
    assert 6 < float(np.std(noisy(batch) - batch.astype(np.float32))) < 10


def test_scaling_kernels_equal_their_numpy_references():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    mean, std = np.float32([120.5, 110.25, 99.0]), np.float32([55.0, 60.5, 70.25])
    inv_std = (1 / std).astype(np.float32)
    np.testing.assert_allclose(augment.scale(image, mean, inv_std), (image - mean.astype(np.float64)) / std,
                               rtol=1e-5, atol=1e-5)
    table = rng.standard_normal(1000).astype(np.float32)
    for flip, alpha, beta, offset, sigma in [(False, 1, 0, 0, 0), (True, 1.2, -30, 990, 8), (True, 0.8, 40, 5, 3)]:
        out = np.empty(image.shape, np.float32)
        augment.augment_scale_kernel(image, flip, np.float32(alpha), np.float32(beta), table, offset,
                                     np.float32(sigma), mean, inv_std, out)
        expected = augment.augment_scale_numpy(image, flip, alpha, beta, table, offset, sigma, mean, inv_std)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def image_hashes(ds):
    images, _ = collect(ds)
    return [hashlib.sha1(image.tobytes()).hexdigest() for image in images]


@pytest.mark.parametrize("by_file", [True, False])
def test_input_context_shards_are_disjoint_and_complete(dataset, by_file):
    """By file when there are enough shards, by record when there are not."""
    metadata = pipeline.load_metadata(dataset)
    split = "train"
    shards = len(metadata["splits"][split]["shards"])
    pipelines = 2 if by_file else shards + 1
    assert (shards >= pipelines) == by_file
    everything = sorted(image_hashes(pipeline.make_dataset(dataset, split, SMALL, training=False)))
    parts = []
    for index in range(pipelines):
        context = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=index,
                                             num_replicas_in_sync=1)
        part = image_hashes(pipeline.make_dataset(dataset, split, SMALL, context, training=False))
        assert part, f"pipeline {index} got nothing"
        parts += part
    assert sorted(parts) == everything and len(set(everything)) == len(everything)


def test_per_replica_batch(dataset):
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=4)
    images, _ = next(iter(pipeline.make_dataset(dataset, "train", SMALL, context)))
    assert images.shape[0] == SMALL.batch_size // 4


def copy_dataset(source, destination):
    shutil.copytree(source, destination)
    return str(destination)


def test_corrupt_shard_is_named_or_skipped(dataset, tmp_path):
    broken = copy_dataset(dataset, tmp_path / "broken")
    metadata = pipeline.load_metadata(broken)
    victim = os.path.join(broken, metadata["splits"]["val"]["shards"][0])
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(victim, "wb").write(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        collect(pipeline.make_dataset(broken, "val", SMALL))
    error = pipeline.explain_data_loss(broken, "val", metadata)
    assert victim in str(error) and "corrupted record" in str(error)
    _, labels = collect(pipeline.make_dataset(broken, "val", InputConfig(image_size=64, batch_size=8,
                                                                         skip_corrupt=True)))
    assert 0 < len(labels) < metadata["splits"]["val"]["count"]


def test_bad_datasets_fail_clearly(dataset, tmp_path):
    incomplete = copy_dataset(dataset, tmp_path / "incomplete")
    os.remove(os.path.join(incomplete, schema.METADATA_FILE))
    with pytest.raises(FoodpipeError, match="dataset incomplete"):
        pipeline.make_dataset(incomplete, "train", SMALL)
    with pytest.raises(FoodpipeError, match="larger than every image"):
        pipeline.make_dataset(dataset, "train", InputConfig(image_size=600))
    no_test = copy_dataset(dataset, tmp_path / "no_test")
    metadata = json.load(open(os.path.join(no_test, schema.METADATA_FILE)))
    metadata["splits"]["test"] = {"count": 0, "shards": []}
    json.dump(metadata, open(os.path.join(no_test, schema.METADATA_FILE), "w"))
    with pytest.raises(FoodpipeError, match="has no shards"):
        pipeline.make_dataset(no_test, "test", SMALL)
    with pytest.raises(FoodpipeError, match="image_size must be"):
        InputConfig(image_size=4)
