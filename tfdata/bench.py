"""``foodpipe bench input --data URI``: input throughput, every row measured in one run on the same
data, in images per second after warm-up.

- ``decode_only``: read + parse + full ``decode_jpeg`` + centre crop: the practical limit here.
- ``train_pipeline`` / ``eval_pipeline``: exactly what the trainer and the evaluator consume.
- ``pure_tf``: the same window crop with ``tf.image`` flip, brightness and contrast and Keras'
  ``RandomRotation``: what a Keras user writes (``pure_tf_dataset``).
- ``seed_sequence``: the seed report's approach, rebuilt as the baseline: a Keras ``PyDataset``
  that GETs each raw image (the manifest's ``uri``) with the minio client, decodes it with Pillow,
  augments it with albumentations and scales it with numpy, consumed batch by batch as ``fit`` does.
- ``s3_vs_local``: the train pipeline on ``s3://`` against the same shards copied to local disk.
- ``scale_numba_vs_numpy``: the Numba scaling kernel against the numpy expression on one batch.
- ``..._per_core``: the rates divided by the machine's cores, to compare machines.
- ``rows``: the train view each way (``local``: foodpipe's train pipeline; ``service``: the same made
  by a tf.data service's workers, with ``--input-service``; ``pure_tf``; ``seed_sequence``), each
  with ``img_per_s`` and ``cpu_s_per_img``, the CPU seconds the benchmark process spent per image
  (its own CPU time: every tf.data thread counts; for ``service``, what is left on the trainer).
- ``service_vs_local`` and ``service_cpu_vs_local``: the service row's rate and trainer CPU per
  image against the local row's.

``decode_only`` decodes every pixel at full resolution (no DCT scaling): the limit of a pipeline
that decodes every pixel. The train and eval pipelines decode only their window, at the smallest
DCT scale that keeps it at least the output size (``pipeline.decode_window``).
"""

import contextlib
import dataclasses
import io
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from foodpipe import datasets, s3, schema, storage, uri
from foodpipe.datasets import DatasetInfo
from tfdata import augment, pipeline, service
from tfdata.config import InputConfig

WARMUP_BATCHES = 3


def measure(dataset, images: int, watch=contextlib.nullcontext()) -> dict:
    """Iterate ``dataset`` (batches) past a warm-up, then time ``images`` images: ``img_per_s`` and
    ``cpu_s_per_img``, the CPU seconds this process (every tf.data thread in it) spent per image.
    ``watch``: a context around each wait for a batch."""
    iterator = iter(dataset.repeat())
    for _ in range(WARMUP_BATCHES):
        with watch:
            next(iterator)
    seen, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while seen < images:
        with watch:
            batch = next(iterator)
        seen += int(tf.shape(batch[0] if isinstance(batch, tuple) else batch)[0])
    return {"img_per_s": seen / (time.perf_counter() - started),
            "cpu_s_per_img": (time.process_time() - cpu_started) / seen}


def images_per_second(dataset, images: int) -> float:
    return measure(dataset, images)["img_per_s"]


def pure_tf_dataset(info: DatasetInfo, config: InputConfig):
    """What a Keras user writes for the same train view: foodpipe's window crop (read, parse,
    window decode and resize), then ``tf.image`` flip, brightness and contrast on each image and
    Keras' ``RandomRotation`` on each batch, all TensorFlow ops (no Python in the pipeline)."""
    import keras

    rotate = keras.layers.RandomRotation(config.rotate_degrees / 360, fill_mode="reflect", seed=config.seed)
    limit = config.brightness_contrast

    def augment_image(encoded, label):
        image = tf.cast(pipeline.decode_train_image(encoded, config), tf.float32)
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_brightness(image, 255 * limit)
        image = tf.image.random_contrast(image, 1 - limit, 1 + limit)
        return image, label

    examples = pipeline.read_examples(info, schema.TRAIN, config, shuffle=True)
    batches = examples.map(augment_image, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False) \
        .batch(config.batch_size)
    return batches.map(lambda images, labels: (tf.cast(tf.clip_by_value(rotate(images, training=True), 0, 255),
                                                       tf.uint8), labels),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).prefetch(tf.data.AUTOTUNE)


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


def measure_sequence(sequence, images: int) -> dict:
    """Consume the ``PyDataset`` as ``model.fit`` does with its defaults: batch after batch
    (``img_per_s`` and ``cpu_s_per_img``, as ``measure``)."""
    sequence[0]  # warm-up
    seen, index, started, cpu_started = 0, 1, time.perf_counter(), time.process_time()
    while seen < images:
        x, _ = sequence[index % len(sequence)]
        seen += len(x)
        index += 1
    return {"img_per_s": seen / (time.perf_counter() - started),
            "cpu_s_per_img": (time.process_time() - cpu_started) / seen}


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


def run(data_uri: str, config: InputConfig, images: int, seed_images: int, input_service: str | None = None) -> dict:
    info = datasets.load(data_uri)
    try:
        return _run(info, config, images, seed_images, input_service)
    except tf.errors.DataLossError:
        raise pipeline.explain_data_loss(info, schema.TRAIN) from None
    except tf.errors.OpError as exc:
        explained = service.explain(exc, input_service)
        if explained:
            raise explained from None
        raise


def measure_service(info: DatasetInfo, config: InputConfig, images: int) -> dict:
    """The train view made by the service's workers (``measure``; each pass a new epoch job), under a
    ``StallWatch`` that ends the benchmark with one line if the service stops answering."""
    dataset = pipeline.train_dataset(info, schema.TRAIN, config)
    watch = service.StallWatch(config.input_service, config.input_service_timeout)
    return measure(dataset, images, watch)


def _run(info: DatasetInfo, config: InputConfig, images: int, seed_images: int, input_service: str | None) -> dict:
    settings = s3.S3Settings.from_env()
    data_uri = info.uri
    train = pipeline.train_dataset(info, schema.TRAIN, config)
    evaluation = pipeline.eval_dataset(info, schema.TRAIN, config)
    rows = {  # the train view, each way: images per second and this process's CPU seconds per image
        "local": measure(train, images),
        **({"service": measure_service(info, dataclasses.replace(config, input_service=input_service), images)}
           if input_service else {}),
        "pure_tf": measure(pure_tf_dataset(info, config), images),
        "seed_sequence": measure_sequence(
            seed_sequence(datasets.read_manifest(data_uri, settings, schema.TRAIN), info, config, settings),
            seed_images),
    }
    result = {
        "decode_only_img_per_s": images_per_second(decode_only_dataset(info, config), images),
        "train_pipeline_img_per_s": rows["local"]["img_per_s"],
        "eval_pipeline_img_per_s": images_per_second(evaluation, images),
        "seed_sequence_img_per_s": rows["seed_sequence"]["img_per_s"],
        "pure_tf_img_per_s": rows["pure_tf"]["img_per_s"],
    }
    if "service" in rows:
        result["service_vs_local"] = rows["service"]["img_per_s"] / rows["local"]["img_per_s"]
        result["service_cpu_vs_local"] = rows["service"]["cpu_s_per_img"] / rows["local"]["cpu_s_per_img"]
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
    result["train_vs_pure_tf"] = result["train_pipeline_img_per_s"] / result["pure_tf_img_per_s"]
    result["scale_numba_vs_numpy"] = scale_ratio(config, info)
    cores = os.cpu_count() or 1
    for name in ("decode_only", "train_pipeline", "eval_pipeline"):
        result[f"{name}_img_per_s_per_core"] = result[f"{name}_img_per_s"] / cores
    result.update(cores=cores, image_size=config.image_size, batch_size=config.batch_size)
    result = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    result["rows"] = {name: {"img_per_s": round(row["img_per_s"], 1), "cpu_s_per_img": round(row["cpu_s_per_img"], 5)}
                      for name, row in rows.items()}
    return result
