"""``make_dataset``: the one tf.data input pipeline, used by the trainer, the evaluator and the
benchmark. It reads what the Beam job wrote (local or ``s3://``)::

    shards -> interleaved TFRecord reads -> [train: shuffle] -> parse -> decode
           -> [train: random-resized crop + albumentations/Numba augmentation + scaling]
           -> [eval: centre crop + scaling, the same function the serving model uses]
           -> batch -> prefetch
"""

import hashlib
import json

import tensorflow as tf

from foodpipe import schema, uri
from foodpipe.errors import FoodpipeError
from tfdata import augment, filesystem
from tfdata.config import InputConfig

AUTOTUNE = tf.data.AUTOTUNE


def load_metadata(data_uri: str) -> dict:
    """The dataset's ``metadata.json``; its absence means the dataset is incomplete."""
    return load_metadata_and_digest(data_uri)[0]


def load_metadata_and_digest(data_uri: str) -> tuple[dict, str]:
    """``(metadata, SHA-256 of the metadata.json file)``, from one read."""
    filesystem.ensure_readable(data_uri)
    path = uri.join(data_uri, schema.METADATA_FILE)
    try:
        if not tf.io.gfile.exists(path):
            raise FoodpipeError(f"dataset incomplete: no {schema.METADATA_FILE} at {data_uri}")
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except tf.errors.OpError as exc:
        raise FoodpipeError(f"cannot read {path}: {exc.message.splitlines()[0]}") from None
    metadata = json.loads(data)
    if metadata.get("schema_version") != schema.SCHEMA_VERSION:
        raise FoodpipeError(f"{path} has schema_version {metadata.get('schema_version')}, "
                            f"this foodpipe reads {schema.SCHEMA_VERSION}")
    return metadata, hashlib.sha256(data).hexdigest()


def shard_paths(data_uri: str, metadata: dict, split: str) -> list[str]:
    if split not in metadata["splits"]:
        raise FoodpipeError(f"unknown split {split!r}: the dataset has {', '.join(metadata['splits'])}")
    shards = metadata["splits"][split]["shards"]
    if not shards or metadata["splits"][split]["count"] == 0:
        raise FoodpipeError(f"split {split!r} of {data_uri} has no shards")
    return [uri.join(data_uri, name) for name in shards]


def parse(record):
    features = tf.io.parse_single_example(record, schema.feature_spec())
    return features[schema.ENCODED], features[schema.LABEL]


def central_crop_window(shape, fraction: float):
    """``[y, x, h, w]`` of a centred square of ``fraction`` times the shorter side."""
    height, width = shape[0], shape[1]
    side = tf.maximum(1, tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * fraction, tf.int32))
    return tf.stack([(height - side) // 2, (width - side) // 2, side, side])


def decode_eval_image(encoded, image_size: int, crop_fraction: float):
    """Centre crop decoded straight from the JPEG, resized: float32 in 0-255. Deterministic."""
    window = central_crop_window(tf.image.extract_jpeg_shape(encoded), crop_fraction)
    image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
    return tf.image.resize(image, [image_size, image_size])


def standardize(image, mean, std):
    """Standard scaling with the dataset's train statistics, in TensorFlow ops (serving-safe)."""
    return (tf.cast(image, tf.float32) - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def preprocess_eval_image(encoded, image_size: int, crop_fraction: float, mean, std):
    """Raw JPEG bytes -> model input. Eval and the exported serving model both use exactly this."""
    return standardize(decode_eval_image(encoded, image_size, crop_fraction), mean, std)


def decode_train_image(encoded, config: InputConfig):
    """A random-resized crop, decoding only the crop window: uint8 ``image_size`` square."""
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        tf.image.extract_jpeg_shape(encoded),
        bounding_boxes=tf.zeros([1, 0, 4]),
        area_range=config.crop_area,
        aspect_ratio_range=config.crop_aspect,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
    image = tf.image.resize(image, [config.image_size, config.image_size])
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def read_shard(path, config: InputConfig):
    records = tf.data.TFRecordDataset(path, buffer_size=int(config.read_buffer_mb * 2**20))
    return records.ignore_errors(log_warning=True) if config.skip_corrupt else records


def make_dataset(data_uri: str, split: str, config: InputConfig, input_context=None, training=None,
                 metadata=None, stats=None) -> tf.data.Dataset:
    """Batches of ``(images float32 [B, S, S, 3], labels int64 [B])`` for ``split``.

    ``training`` (default: ``split == "train"``) selects shuffling and augmentation; otherwise the
    order is deterministic. With a ``tf.distribute.InputContext`` the batch is per replica and the
    input is sharded by file when there are enough shards, else by record. ``stats``, a
    ``(mean, std)`` pair, overrides the dataset's own (a model is fed with the statistics it was
    trained with).
    """
    training = split == "train" if training is None else training
    metadata = metadata or load_metadata(data_uri)
    paths = shard_paths(data_uri, metadata, split)
    largest = metadata.get("image_sides", {}).get("max")
    if largest and config.image_size > largest:
        raise FoodpipeError(f"image_size {config.image_size} is larger than every image in {data_uri} "
                            f"(largest side {largest})")
    mean, std = stats or (metadata["stats"]["mean"], metadata["stats"]["std"])

    pipelines = input_context.num_input_pipelines if input_context else 1
    by_file = pipelines > 1 and len(paths) >= pipelines
    files = tf.data.Dataset.from_tensor_slices(paths)
    if by_file:
        files = files.shard(pipelines, input_context.input_pipeline_id)
    if training:
        files = files.shuffle(len(paths), seed=config.seed, reshuffle_each_iteration=True)
    records = files.interleave(
        lambda path: read_shard(path, config),
        cycle_length=min(config.cycle_length, len(paths)),
        num_parallel_calls=AUTOTUNE,
        deterministic=not training,
    )
    if pipelines > 1 and not by_file:
        records = records.shard(pipelines, input_context.input_pipeline_id)
    if training:
        records = records.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
    examples = records.map(parse, num_parallel_calls=AUTOTUNE, deterministic=not training)

    size = config.image_size
    batch = input_context.get_per_replica_batch_size(config.batch_size) if input_context else config.batch_size
    if training:
        augmenter = augment.Augmenter(config, mean, std)

        def augment_batch(images, labels):
            images = tf.numpy_function(augmenter, [images], tf.float32, stateful=True)
            images.set_shape([None, size, size, 3])
            return images, labels

        dataset = (
            examples.map(lambda encoded, label: (decode_train_image(encoded, config), label),
                         num_parallel_calls=AUTOTUNE, deterministic=False)
            .batch(batch)
            .map(augment_batch, num_parallel_calls=AUTOTUNE, deterministic=False)
        )
    else:
        # preprocess_eval_image, split in two: standardizing a whole batch is one op instead of
        # 64 small ones (per image it cost 0.8 ms, measured).
        dataset = (
            examples.map(lambda encoded, label: (decode_eval_image(encoded, size, config.eval_crop_fraction), label),
                         num_parallel_calls=AUTOTUNE, deterministic=True)
            .batch(batch)
            .map(lambda images, labels: (standardize(images, mean, std), labels), num_parallel_calls=AUTOTUNE)
        )
    dataset = dataset.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = not training
    # Sharding is done above, so tf.distribute must not shard again (and warn about it).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def find_corrupt_shards(paths: list[str]) -> list[tuple[str, str]]:
    """``(path, reason)`` for every shard TensorFlow cannot read to the end."""
    bad = []
    for path in paths:
        try:
            for _ in tf.data.TFRecordDataset(path):
                pass
        except tf.errors.OpError as exc:
            bad.append((path, exc.message.split("[Op:")[0].strip().rsplit("}}", 1)[-1].strip()))
    return bad


def explain_data_loss(data_uri: str, split: str, metadata: dict) -> FoodpipeError:
    """After a ``DataLossError`` (which names no file): find and name the bad shard(s)."""
    bad = find_corrupt_shards(shard_paths(data_uri, metadata, split))
    if not bad:
        return FoodpipeError(f"corrupt data in split {split!r} of {data_uri}")
    names = "; ".join(f"{path}: {reason}" for path, reason in bad)
    return FoodpipeError(f"corrupt TFRecord shard(s) (rerun with skip_corrupt to skip them): {names}")

