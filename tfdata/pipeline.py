"""The one tf.data input pipeline, ``train_dataset`` and ``eval_dataset``, both reading through
``read_examples``; used by the trainer, the evaluator and the benchmark. It reads what the Beam job
wrote (local or ``s3://``)::

    read_examples: shards -> interleaved TFRecord reads -> [shuffle] -> parse
    train_dataset: -> a random window (random_window), decoded -> batch -> albumentations/Numba
                   augmentation -> prefetch
    eval_dataset:  -> the eval window, the same function the serving model uses -> batch -> prefetch
"""

import math

import tensorflow as tf

from foodpipe import datasets, schema, uri
from foodpipe.datasets import DatasetInfo
from foodpipe.errors import CorruptShards, FoodpipeError, RunFailed
from tfdata import augment, filesystem, service
from tfdata.config import InputConfig

AUTOTUNE = tf.data.AUTOTUNE


def shard_paths(data: str | DatasetInfo, split: str) -> list[str]:
    """The shard files of ``split`` of a dataset (its URI or ``DatasetInfo``), made readable by
    TensorFlow (every TensorFlow read of a dataset starts here)."""
    info = datasets.load(data)
    if split not in info.splits:
        raise FoodpipeError(f"unknown split {split!r}: the dataset has {', '.join(info.splits)}")
    if not info.shard_names(split) or info.count(split) == 0:
        raise FoodpipeError(f"split {split!r} of {info.uri} has no shards")
    filesystem.ensure_readable(info.uri)
    return [uri.join(info.uri, name) for name in info.shard_names(split)]


def parse_with_id(record):
    """``(JPEG bytes, label, image id)`` of one record (the schema's every feature is parsed anyway)."""
    features = tf.io.parse_single_example(record, schema.feature_spec())
    return features[schema.ENCODED], features[schema.LABEL], features[schema.IMAGE_ID]


def parse(record):
    return parse_with_id(record)[:2]


def eval_window(shape, framing: str, crop_fraction: float):
    """``[y, x, h, w]`` of what the model sees of an image of ``shape``: the whole image, or for
    framing ``crop`` a centred square of ``crop_fraction`` times the shorter side."""
    height, width = shape[0], shape[1]
    if framing != "crop":
        return tf.stack([0, 0, height, width])
    side = tf.maximum(1, tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * crop_fraction, tf.int32))
    return tf.stack([(height - side) // 2, (width - side) // 2, side, side])


def random_window(shape, config: InputConfig):
    """``[y, x, h, w]``: the train view's random version of ``eval_window``.

    Its area is ``config.crop_area`` times the eval window's and its aspect ratio the eval window's
    times a factor drawn log-uniformly from ``config.crop_aspect``; it lies anywhere in the image.
    At area 1 and factor 1 it is the eval window, moved: train and eval frame images alike.
    """
    height, width = shape[0], shape[1]
    base = tf.cast(eval_window(shape, config.framing, config.eval_crop_fraction)[2:], tf.float32)
    area = tf.random.uniform([], *config.crop_area)
    log_low, log_high = math.log(config.crop_aspect[0]), math.log(config.crop_aspect[1])
    stretch = tf.exp(tf.random.uniform([], log_low, log_high)) if log_high > log_low else tf.constant(1.0)
    window_h = tf.clip_by_value(tf.cast(tf.round(base[0] * tf.sqrt(area / stretch)), tf.int32), 1, height)
    window_w = tf.clip_by_value(tf.cast(tf.round(base[1] * tf.sqrt(area * stretch)), tf.int32), 1, width)
    y = tf.random.uniform([], 0, height - window_h + 1, dtype=tf.int32)
    x = tf.random.uniform([], 0, width - window_w + 1, dtype=tf.int32)
    return tf.stack([y, x, window_h, window_w])


def frame(window_pixels, image_size: int, framing: str):
    """A window's pixels -> the model's uint8 ``image_size`` square (squashed, or padded for ``pad``).

    Bilinear resizing only averages pixels, so its output stays within 0..255: rounding is adding
    0.5 before the cast, with no clipping pass (measured faster than round+clip+cast: docs/BENCHMARKS.md)."""
    if framing == "pad":
        image = tf.image.resize_with_pad(window_pixels, image_size, image_size)
    else:
        image = tf.image.resize(window_pixels, [image_size, image_size])
    return tf.cast(image + 0.5, tf.uint8)


DCT_SCALES = (1, 2, 4, 8)  # libjpeg decodes at 1/1, 1/2, 1/4 or 1/8 of the size, for less work


def decode_window(encoded, shape, window, image_size: int):
    """The pixels of ``window`` (``[y, x, h, w]`` in the full image, whose ``extract_jpeg_shape``
    is ``shape``) of a JPEG, decoded at the smallest DCT scale that keeps both of the window's sides
    at least ``image_size`` (a window twice the output size or more decodes at 1/2, four times at
    1/4, ...): only the window is decoded, and fewer of its pixels, for the same output size.
    Libjpeg's scaled decode averages the pixels it drops, as a downscale should."""
    shortest = tf.minimum(window[2], window[3])
    scale_index = tf.reduce_sum(tf.cast(shortest >= image_size * tf.constant(DCT_SCALES[1:]), tf.int32))
    size = shape[:2]

    def decode_at(ratio: int):
        def decode():  # the window's edges rounded to the nearest pixel of the scaled image
            start = (window[:2] + ratio // 2) // ratio
            end = tf.minimum((window[:2] + window[2:] + ratio // 2) // ratio, (size + ratio - 1) // ratio)
            scaled = tf.concat([start, tf.maximum(1, end - start)], axis=0)
            return tf.image.decode_and_crop_jpeg(encoded, scaled, channels=3, ratio=ratio)
        return decode

    return tf.switch_case(scale_index, [decode_at(ratio) for ratio in DCT_SCALES])


def preprocess_eval_image(encoded, image_size: int, framing: str, crop_fraction: float):
    """Raw JPEG bytes -> the model's uint8 input. Eval, the serving model and ``predict`` all use
    exactly this (``decode_window``, then ``frame``). Deterministic."""
    shape = tf.image.extract_jpeg_shape(encoded)
    window = eval_window(shape, framing, crop_fraction)
    return frame(decode_window(encoded, shape, window, image_size), image_size, framing)


def decode_train_image(encoded, config: InputConfig):
    """The train view: ``preprocess_eval_image`` with ``random_window`` instead of the eval window."""
    shape = tf.image.extract_jpeg_shape(encoded)
    window = random_window(shape, config)
    return frame(decode_window(encoded, shape, window, config.image_size), config.image_size, config.framing)


def read_shard(path, config: InputConfig):
    records = tf.data.TFRecordDataset(path, buffer_size=int(config.read_buffer_mb * 2**20))
    return records.ignore_errors(log_warning=True) if config.skip_corrupt else records


PADDING_LABEL = -1  # blank examples that make every replica's eval batch full; they weigh nothing


def read_examples(data: str | DatasetInfo, split: str, config: InputConfig, input_context=None, shuffle: bool = False,
                  repeat: bool = False, skip: int = 0, with_ids: bool = False) -> tf.data.Dataset:
    """The split's parsed records, ``(JPEG bytes, label[, image id])``, of a dataset (its URI or
    ``DatasetInfo``).

    With a ``tf.distribute.InputContext`` this input pipeline reads its own share: whole shards when
    there are enough of them, else every n-th record. ``shuffle``: shards and records in a random
    order that depends on ``config.seed`` alone. ``repeat``: endless. ``skip``: that many records
    passed over (cheaply, before parsing), so a resumed run continues the stream where it stopped.
    """
    info = datasets.load(data)
    paths = shard_paths(info, split)
    if info.largest_side and config.image_size > info.largest_side:
        raise FoodpipeError(f"image_size {config.image_size} is larger than every image in {info.uri} "
                            f"(largest side {info.largest_side})")
    ordered = not shuffle or repeat  # a resumed trainer finds its place again in an ordered stream
    pipelines = input_context.num_input_pipelines if input_context else 1
    by_file = pipelines > 1 and len(paths) >= pipelines
    files = tf.data.Dataset.from_tensor_slices(paths)
    if by_file:
        files = files.shard(pipelines, input_context.input_pipeline_id)
    if shuffle:
        files = files.shuffle(len(paths), seed=config.seed, reshuffle_each_iteration=True)
    records = files.interleave(lambda path: read_shard(path, config), cycle_length=min(config.cycle_length, len(paths)),
                               num_parallel_calls=AUTOTUNE, deterministic=ordered)
    if pipelines > 1 and not by_file:
        records = records.shard(pipelines, input_context.input_pipeline_id)
    if shuffle:
        records = records.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    if skip:
        records = records.skip(skip)
    return records.map(parse_with_id if with_ids else parse, num_parallel_calls=AUTOTUNE, deterministic=ordered)


def replica_batch(config: InputConfig, input_context=None) -> int:
    """The batch one input pipeline makes: the global batch, split over the replicas."""
    return input_context.get_per_replica_batch_size(config.batch_size) if input_context else config.batch_size


def finish(dataset: tf.data.Dataset, ordered: bool) -> tf.data.Dataset:
    """Prefetch, and the options every foodpipe dataset has."""
    options = tf.data.Options()
    options.deterministic = ordered
    # Sharding is done by ``read_examples``, so tf.distribute must not shard again (and warn about it).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.prefetch(AUTOTUNE).with_options(options)


def train_dataset(data: str | DatasetInfo, split: str, config: InputConfig, input_context=None, repeat: bool = False,
                  skip: int = 0, with_ids: bool = False) -> tf.data.Dataset:
    """The train stream: batches of ``(images uint8 [B, S, S, 3], labels int64 [B])`` of ``split``,
    shuffled, each image a random window (``decode_train_image``), then the batch augmentation.
    Pixels stay uint8 (a quarter of float32's bytes to the device): scaling is the model's first
    layer. ``repeat``: endless, every batch full, in an order that depends on ``config.seed``
    alone; ``skip``: records passed over (see ``read_examples``); ``with_ids``: batches of
    ``(images, labels, image ids)``.

    With ``config.input_service`` the whole stream is made by the service's workers
    (``tfdata.service``): one pass over the split per iteration, each record once.
    """
    if config.input_service:
        if repeat or skip or (input_context and input_context.num_input_pipelines > 1):
            raise ValueError("through the input service the train stream is one pass per iteration, read by one "
                             "input pipeline")
        service.check_reachable(config.input_service)
    ordered = repeat
    examples = read_examples(data, split, config, input_context, shuffle=True, repeat=repeat, skip=skip,
                             with_ids=with_ids)
    size = config.image_size
    dataset = examples.map(lambda encoded, label, *ids: (decode_train_image(encoded, config), label, *ids),
                           num_parallel_calls=AUTOTUNE, deterministic=ordered)
    dataset = dataset.batch(replica_batch(config, input_context))
    if config.any_augmentation:
        augmenter = None if config.input_service else augment.Augmenter(config)

        def augment_batch(images, *rest):
            if augmenter is None:
                return (service.augment_on_worker(images, config), *rest)
            images = tf.numpy_function(augmenter, [images], tf.uint8, stateful=True)
            images.set_shape([None, size, size, 3])
            return (images, *rest)

        dataset = dataset.map(augment_batch, num_parallel_calls=AUTOTUNE, deterministic=ordered)
    if config.input_service:
        dataset = service.distribute(dataset, config.input_service)
    return finish(dataset, ordered)


def eval_dataset(data: str | DatasetInfo, split: str, config: InputConfig, input_context=None, repeat: bool = False,
                 pad_to_multiple: int | None = None, with_ids: bool = False) -> tf.data.Dataset:
    """The eval stream: batches of ``(images, labels)`` of ``split`` in a fixed order, each image as
    the serving model frames it (``preprocess_eval_image``).

    ``pad_to_multiple`` (one input pipeline): blank images labelled ``PADDING_LABEL`` fill the split
    up to a multiple of it, the global batch size, so that no replica gets a partial or empty batch.
    ``with_ids``: batches of ``(images, labels, image ids)``, for finding images again.
    """
    if with_ids and pad_to_multiple:
        raise ValueError("with_ids is for unpadded eval datasets")
    if pad_to_multiple and input_context and input_context.num_input_pipelines > 1:
        raise ValueError("pad_to_multiple needs the whole split in one input pipeline")
    info = datasets.load(data)
    examples = read_examples(info, split, config, input_context, repeat=repeat, with_ids=with_ids)
    size = config.image_size
    images = examples.map(
        lambda encoded, *rest: (preprocess_eval_image(encoded, size, config.framing, config.eval_crop_fraction), *rest),
        num_parallel_calls=AUTOTUNE, deterministic=True)
    if pad_to_multiple:
        blank = (tf.zeros([size, size, 3], tf.uint8), tf.constant(PADDING_LABEL, tf.int64))
        padding = -info.count(split) % pad_to_multiple
        images = images.concatenate(tf.data.Dataset.from_tensors(blank).repeat(padding))
    return finish(images.batch(replica_batch(config, input_context)), ordered=True)


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


def explain_data_loss(data: str | DatasetInfo, split: str) -> RunFailed:
    """After a ``DataLossError`` (which names no file): find and name the bad shard(s)
    (``CorruptShards``), or say the split is corrupt somewhere."""
    info = datasets.load(data)
    bad = find_corrupt_shards(shard_paths(info, split))
    return CorruptShards(bad) if bad else RunFailed(f"corrupt data in split {split!r} of {info.uri}")

