"""``foodpipe bench input --data URI``: input throughput, every row measured in one run on the same
data, in images per second after warm-up.

- ``decode_only``: read + parse + full ``decode_jpeg`` + centre crop: the practical limit here.
- ``train_pipeline`` / ``eval_pipeline``: exactly what the trainer and the evaluator consume.
- ``seed_sequence``: the seed report's approach, rebuilt as the baseline: a Keras ``PyDataset``
  that GETs each raw image (the manifest's ``uri``) with the minio client, decodes it with Pillow,
  augments it with albumentations and scales it with numpy, consumed batch by batch as ``fit`` does.
- ``s3_vs_local``: the train pipeline on ``s3://`` against the same shards copied to local disk.
- ``scale_numba_vs_numpy``: the Numba scaling kernel against the numpy expression on one batch.
- ``..._per_core``: the rates divided by the machine's cores, to compare machines.

``decode_only`` decodes every pixel at full resolution (no DCT scaling): the limit of a pipeline
that decodes every pixel. The train and eval pipelines decode only their window, at the smallest
DCT scale that keeps it at least the output size (``pipeline.decode_window``).
"""

import io
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from foodpipe import datasets, s3, schema, storage, uri
from foodpipe.datasets import DatasetInfo
from tfdata import augment, pipeline
from tfdata.config import InputConfig

WARMUP_BATCHES = 3


def images_per_second(dataset, images: int) -> float:
    """Iterate ``dataset`` (batches) past a warm-up, then time ``images`` images."""
    iterator = iter(dataset.repeat())
    for _ in range(WARMUP_BATCHES):
        next(iterator)
    seen, started = 0, time.perf_counter()
    while seen < images:
        batch = next(iterator)
        seen += int(tf.shape(batch[0] if isinstance(batch, tuple) else batch)[0])
    return seen / (time.perf_counter() - started)


def decode_only_dataset(info: DatasetInfo, config: InputConfig):
    paths = pipeline.shard_paths(info, schema.TRAIN)
    size = config.image_size

    def decode(record):
        encoded, label = pipeline.parse(record)
        image = tf.image.decode_jpeg(encoded, channels=3)
        return tf.image.resize_with_crop_or_pad(image, size, size), label

    records = tf.data.Dataset.from_tensor_slices(paths).interleave(
        lambda path: pipeline.read_shard(path, config),
        cycle_length=min(config.cycle_length, len(paths)), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False)
    return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False) \
        .batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


def seed_sequence(manifest_rows, info: DatasetInfo, config: InputConfig, settings: s3.S3Settings):
    """The seed's hand-made Keras ``Sequence``: one GET per image, Pillow, albumentations, numpy."""
    import albumentations as A
    import cv2
    import keras
    from PIL import Image

    mean, std = (np.asarray(values, np.float32) for values in info.pixel_stats)
    p = config.augment_probability
    steps = [A.RandomResizedCrop(size=(config.image_size, config.image_size), scale=config.crop_area,
                                 ratio=config.crop_aspect)]
    if config.flip:
        steps.append(A.HorizontalFlip(p=0.5))
    if config.rotate_degrees > 0:
        steps.append(A.Rotate(limit=config.rotate_degrees, border_mode=cv2.BORDER_REFLECT_101, p=p))
    if config.blur:
        steps.append(A.GaussianBlur(blur_limit=(min(augment.BLUR_KERNEL_SIZES), max(augment.BLUR_KERNEL_SIZES)),
                                    sigma_limit=augment.BLUR_SIGMA, p=p))
    if config.brightness_contrast > 0:
        steps.append(A.RandomBrightnessContrast(config.brightness_contrast, config.brightness_contrast, p=p))
    if config.noise_std > 0:
        steps.append(A.GaussNoise(std_range=(config.noise_std / 255, config.noise_std / 255),
                                  p=config.augment_probability))
    transform = A.Compose(steps, seed=config.seed)
    client = settings.minio_client() if any(uri.is_s3(r["uri"]) for r in manifest_rows) else None

    def fetch(location: str) -> bytes:
        if uri.is_s3(location):
            bucket, key = uri.split_s3(location)
            response = client.get_object(bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()
        return storage.read(location)

    class SeedSequence(keras.utils.PyDataset):
        def __len__(self):
            return len(manifest_rows) // config.batch_size

        def __getitem__(self, index):
            rows = manifest_rows[index * config.batch_size:(index + 1) * config.batch_size]
            images = []
            for row in rows:
                image = np.asarray(Image.open(io.BytesIO(fetch(row["uri"]))).convert("RGB"))
                images.append(augment.scale_numpy(transform(image=image)["image"], mean, std))
            return np.stack(images), np.asarray([row["label"] for row in rows])

    return SeedSequence()


def sequence_images_per_second(sequence, images: int) -> float:
    """Consume the ``PyDataset`` as ``model.fit`` does with its defaults: batch after batch."""
    sequence[0]  # warm-up
    seen, index, started = 0, 1, time.perf_counter()
    while seen < images:
        x, _ = sequence[index % len(sequence)]
        seen += len(x)
        index += 1
    return seen / (time.perf_counter() - started)


def scale_ratio(config: InputConfig, info: DatasetInfo, repeats: int = 5) -> float:
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(config.batch_size, config.image_size, config.image_size, 3), dtype=np.uint8)
    mean, std = (np.asarray(values, np.float32) for values in info.pixel_stats)
    inv_std = (1 / std).astype(np.float32)
    augment.scale(batch[0], mean, inv_std)  # compile

    def best(fn):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            for image in batch:
                fn(image)
            times.append(time.perf_counter() - started)
        return min(times)

    return best(lambda image: augment.scale_numpy(image, mean, std)) / best(
        lambda image: augment.scale(image, mean, inv_std))


def copy_shards_locally(info: DatasetInfo, directory: str, settings: s3.S3Settings) -> None:
    names = [schema.METADATA_FILE] + [name for split in info.splits for name in info.shard_names(split)]
    for name in names:
        storage.write(os.path.join(directory, name), storage.read(uri.join(info.uri, name), settings))


def run(data_uri: str, config: InputConfig, images: int, seed_images: int) -> dict:
    info = datasets.load(data_uri)
    try:
        return _run(info, config, images, seed_images)
    except tf.errors.DataLossError:
        raise pipeline.explain_data_loss(info, schema.TRAIN) from None


def _run(info: DatasetInfo, config: InputConfig, images: int, seed_images: int) -> dict:
    settings = s3.S3Settings.from_env()
    data_uri = info.uri
    train = pipeline.train_dataset(info, schema.TRAIN, config)
    evaluation = pipeline.eval_dataset(info, schema.TRAIN, config)
    result = {
        "decode_only_img_per_s": images_per_second(decode_only_dataset(info, config), images),
        "train_pipeline_img_per_s": images_per_second(train, images),
        "eval_pipeline_img_per_s": images_per_second(evaluation, images),
        "seed_sequence_img_per_s": sequence_images_per_second(
            seed_sequence(datasets.read_manifest(data_uri, settings, schema.TRAIN), info, config, settings),
            seed_images),
    }
    if uri.is_s3(data_uri):
        with tempfile.TemporaryDirectory(prefix="foodpipe-bench-") as local:
            copy_shards_locally(info, local, settings)
            local_rate = images_per_second(pipeline.train_dataset(local, schema.TRAIN, config), images)
        result["train_pipeline_local_img_per_s"] = local_rate
        result["s3_vs_local"] = result["train_pipeline_img_per_s"] / local_rate
    else:
        result["s3_vs_local"] = None  # the data is local: nothing to compare
    result["train_vs_decode_only"] = result["train_pipeline_img_per_s"] / result["decode_only_img_per_s"]
    result["train_vs_seed_sequence"] = result["train_pipeline_img_per_s"] / result["seed_sequence_img_per_s"]
    result["scale_numba_vs_numpy"] = scale_ratio(config, info)
    cores = os.cpu_count() or 1
    for name in ("decode_only", "train_pipeline", "eval_pipeline"):
        result[f"{name}_img_per_s_per_core"] = result[f"{name}_img_per_s"] / cores
    result.update(cores=cores, image_size=config.image_size, batch_size=config.batch_size)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
