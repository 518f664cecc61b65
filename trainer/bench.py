"""``foodpipe bench train --data URI``: is training input-bound?

Runs the trainer's own step (``trainer.loop``) twice for the same number of steps: once fed by the
real input pipeline (S3/local TFRecords, decode, augmentation), once fed by a few of the same
batches cached in memory (no input cost at all). ``input_bound_ratio`` = real / cached images per second: 1.0 means
the input pipeline keeps the accelerator fully fed. Warm-up steps (tracing, buffers) are not timed.
"""

import os
import time

import keras
import tensorflow as tf

from foodpipe import datasets, schema
from tfdata import pipeline
from trainer import strategy as strategies
from trainer.config import TrainConfig
from trainer.loop import DistributedLoop
from trainer.train import build_model

CACHED_BATCHES = 8


def images_per_second(loop: DistributedLoop, dataset, steps: int, warmup: int, batch: int) -> float:
    iterator = iter(dataset)
    for _ in range(warmup):
        float(loop.train_step(iterator)[0])  # float() waits for the step to finish
    started = time.perf_counter()
    for _ in range(steps):
        totals = loop.train_step(iterator)
    float(totals[0])
    return steps * batch / (time.perf_counter() - started)


def run(config: TrainConfig, steps: int = 20, warmup: int = 5) -> dict:
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = strategies.build(config.strategy, config.cpu_replicas)
    info = datasets.load(config.data)

    def batches(context):
        return pipeline.train_dataset(info, schema.TRAIN, config.input_config(), context, repeat=True)  # the trainer's

    real = strategy.distribute_datasets_from_function(batches)
    cached = strategy.distribute_datasets_from_function(
        lambda context: batches(context).take(CACHED_BATCHES).cache().repeat())
    with strategy.scope():
        model = build_model(config, info.num_classes, info.pixel_stats, steps_per_epoch=steps + warmup)
    loop = DistributedLoop(model, strategy, config.input.batch_size, config.jit_compile)
    try:
        cached_rate = images_per_second(loop, cached, steps, warmup, config.input.batch_size)
        real_rate = images_per_second(loop, real, steps, warmup, config.input.batch_size)
    except tf.errors.DataLossError:
        raise pipeline.explain_data_loss(info, schema.TRAIN) from None
    gpus = tf.config.list_physical_devices("GPU")
    result = {
        "real_input_img_per_s": real_rate,
        "cached_input_img_per_s": cached_rate,
        "input_bound_ratio": real_rate / cached_rate,
        "device": f"{len(gpus)} GPU(s)" if gpus else f"CPU ({os.cpu_count()} cores)",
        "replicas": strategy.num_replicas_in_sync,
        "model": config.model, "image_size": config.input.image_size, "batch_size": config.input.batch_size, "steps": steps,
        "mixed_precision": config.mixed_precision, "jit_compile": config.jit_compile,
    }
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
