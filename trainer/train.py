"""``train_and_evaluate``: build the strategy, the data and the model, fit, log, export.

Everything that can fail on bad input (dataset, model name, tracking server) fails before the
first training step. Only the chief (see ``trainer.strategy``) logs to MLflow and writes
checkpoints; every worker trains and prints the same result line.
"""

import hashlib
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

import models
from foodpipe import datasets, schema, storage
from foodpipe.datasets import DatasetInfo
from foodpipe.errors import CorruptShards, FoodpipeError, RunFailed
from tfdata import pipeline, service
from tfdata.config import InputConfig
from trainer import report, serving, strategy as strategies, tracking
from trainer.checkpoint import ResumableCheckpoint
from trainer.config import CONFIG_FILE, TrainConfig, to_yaml
from trainer.loop import CONFUSION, DistributedLoop, averaged_weights, evaluated_weights
from trainer.mixing import Mixing

log = logging.getLogger(f"foodpipe.{__name__}")  # under the logger the commands show
LOGGED_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


class EpochLogger(keras.callbacks.Callback):
    """Per-epoch train/val loss and accuracy and the learning rate: to the writer and ``history``."""

    def __init__(self, writer, history: dict[str, list[float]]):
        super().__init__()
        self.writer = writer
        self.history = history

    def on_epoch_end(self, epoch, logs=None):
        values = {key: float(value) for key, value in (logs or {}).items() if key in LOGGED_METRICS}
        values["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)
        self.writer.log_metrics(values, step=epoch + 1)


class KeepBest(keras.callbacks.Callback):
    """Remembers the epoch with the highest ``val_accuracy`` (the earlier on a tie): its number, its
    logs and, with ``keep_weights`` (``--keep best``), the weights validation scored (the moving
    average's with EMA), so that the exported model is that epoch's. ``--keep last`` copies none."""

    monitor = "val_accuracy"

    def __init__(self, keep_weights: bool = True):
        super().__init__()
        self.keep_weights = keep_weights
        self.epoch, self.logs, self.weights = 0, {}, None

    @property
    def score(self) -> float:
        return self.logs.get(self.monitor, -math.inf)

    def on_epoch_end(self, epoch, logs=None):
        if (logs or {}).get(self.monitor, -math.inf) > self.score:
            self.epoch, self.logs = epoch + 1, dict(logs)
            if self.keep_weights:
                self.weights = evaluated_weights(self.model)

    def restore_best(self) -> None:
        if self.weights is not None:
            self.model.set_weights(self.weights)

    def logs_state(self) -> dict:
        """The kept epoch's logs as JSON values (for the checkpoint)."""
        return {key: value.tolist() if isinstance(value, np.ndarray) else float(value)
                for key, value in self.logs.items()}

    def restore_state(self, epoch: int, logs: dict, weights) -> None:
        self.epoch, self.weights = epoch, weights
        self.logs = {key: np.asarray(value) if isinstance(value, list) else value for key, value in logs.items()}


class EpochWarmup(keras.callbacks.Callback):
    """The plateau schedule's warm-up: ``lr`` times (epoch + 1) / (epochs + 1) for the first
    ``epochs`` epochs. Per epoch, since ReduceLROnPlateau needs a plain learning rate to change,
    not a per-step schedule."""

    def __init__(self, lr: float, epochs: int):
        super().__init__()
        self.lr, self.epochs = lr, epochs

    def on_epoch_begin(self, epoch, logs=None):
        if epoch <= self.epochs:
            self.model.optimizer.learning_rate = self.lr * (epoch + 1) / (self.epochs + 1)


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """The optimizer's learning rate: a per-step schedule (its position is the optimizer's step
    count, saved with the optimizer), or a plain value that ReduceLROnPlateau changes."""
    if config.lr_schedule == "plateau":
        return config.lr
    warmup_steps = config.warmup * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup_steps else config.lr,
        decay_steps=max(1, config.epochs * steps_per_epoch - warmup_steps),
        alpha=0.0 if config.lr_schedule == "cosine" else 1.0,  # alpha 1: no decay (constant)
        warmup_target=config.lr if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(config: TrainConfig, model: keras.Model, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam or SGD; with ``weight_decay`` the decay is decoupled (Adam becomes AdamW) and spares
    biases and BatchNorm's scales and offsets (every 1-D variable); with ``ema`` the optimizer
    keeps a moving average of the weights (see ``loop.averaged_weights``)."""
    options = {"weight_decay": config.weight_decay or None, "use_ema": config.ema > 0,
               "ema_momentum": config.ema or 0.99}
    lr = learning_rate(config, steps_per_epoch)
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=config.momentum, **options)
    elif config.weight_decay:
        optimizer = keras.optimizers.AdamW(lr, **options)
    else:
        optimizer = keras.optimizers.Adam(lr, **options)
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) <= 1])
    return optimizer


def build_model(config: TrainConfig, num_classes: int, pixel_stats: tuple, steps_per_epoch: int) -> keras.Model:
    try:
        model = models.build(config.model, num_classes, config.input.image_size, pixel_stats=pixel_stats,
                             **config.model_hyperparameters())
    except ValueError as exc:
        raise FoodpipeError(f"model {config.model!r}: {exc}") from None
    model.compile(optimizer=make_optimizer(config, model, steps_per_epoch), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.optimizer.build(model.trainable_variables)  # here, in the strategy's scope, not inside a step
    return model


def weights_digest(model: keras.Model) -> str:
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.asarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()


def run_tags(strategy: tf.distribute.Strategy) -> dict:
    return {
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "strategy": strategies.describe(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "workers": strategies.cluster_size(),
        "devices": ", ".join(device.name for device in tf.config.list_logical_devices()),
    }


def explain_input_error(info: DatasetInfo, error: tf.errors.OpError, address: str | None) -> Exception:
    """What to raise after a TensorFlow error while training: for a ``DataLossError``, the corrupt
    shard(s) of either split named; for the input service's errors a user can act on, one line;
    else the error itself."""
    if isinstance(error, tf.errors.DataLossError):
        for split in (schema.TRAIN, schema.VAL):
            explained = pipeline.explain_data_loss(info, split)
            if isinstance(explained, CorruptShards):
                return explained
        return RunFailed(f"corrupt data in {info.uri}")
    return service.explain(error, address) or error


def distributed_datasets(strategy, config: TrainConfig, inputs: InputConfig, info: DatasetInfo, multi_worker: bool,
                         steps_done: int = 0):
    """Train (endless, full batches; epochs are counted in steps) and val, each replica fed its own share.

    The train stream's order depends on the seed alone; a resumed run (``steps_done`` > 0) skips
    what the first run consumed: every step takes a global batch, split over the input pipelines.
    On one machine validation is exact: the split is padded with weightless blanks to a multiple of
    the global batch, so that no replica ever gets a partial or empty batch. Workers must all run
    the same number of steps, so there it repeats and ``validation_steps`` bounds it.
    Through the input service, train is finite instead: an epoch is one pass over the split.
    """
    def train(context):
        if inputs.input_service:  # one pass per epoch, made by the service's workers
            return pipeline.train_dataset(info, schema.TRAIN, inputs, context)
        consumed = steps_done * config.input.batch_size // context.num_input_pipelines
        return pipeline.train_dataset(info, schema.TRAIN, inputs, context, repeat=True, skip=consumed)

    def val(context):
        if multi_worker:
            return pipeline.eval_dataset(info, schema.VAL, inputs, context, repeat=True)
        return pipeline.eval_dataset(info, schema.VAL, inputs, context, pad_to_multiple=config.input.batch_size)

    return strategy.distribute_datasets_from_function(train), strategy.distribute_datasets_from_function(val)


def make_writer(config: TrainConfig, chief: bool):
    if not chief:
        return tracking.NullWriter()
    return tracking.MlflowWriter(tracking.chosen_uri(config.mlflow_uri), config.experiment, config.run_name)


def log_outputs(writer, model: keras.Model, config: TrainConfig, info: DatasetInfo, history: dict,
                kept_logs: dict) -> str | None:
    """Pictures (training curves, the kept epoch's val confusion matrix), the dataset's metadata and
    the serving model (``packaging.save_model``) as the run's logged model, with the kept epoch's
    val metrics."""
    val_confusion = kept_logs[f"val_{CONFUSION}"]
    scratch = writer.scratch_dir()
    classes = info.classes
    writer.log_artifact(report.plot_training_curves(history, os.path.join(scratch, "training_curves.png")), "plots")
    writer.log_artifact(report.plot_confusion_matrix(val_confusion, classes,
                                                     os.path.join(scratch, "confusion_matrix.png")), "plots")
    metadata_path = os.path.join(scratch, schema.METADATA_FILE)
    storage.write_json(metadata_path, info.metadata)
    writer.log_artifact(metadata_path, "dataset")
    serving_model = serving.build(model, config.input.framing, config.input.eval_crop_fraction, classes)
    metrics = {key: float(kept_logs[key]) for key in LOGGED_METRICS if key.startswith("val_") and key in kept_logs}
    step = config.epochs + 1 if config.keep == "best" else config.epochs  # where keep_epoch logged them
    return writer.log_model(serving_model, first_record_bytes(info, schema.VAL), config.params(), metrics, info, step)


def log_inputs(writer, config: TrainConfig, info: DatasetInfo) -> None:
    """What the run read: its resolved settings as ``config.yaml`` (``foodpipe train --config
    config.yaml`` reruns it) and the dataset as an MLflow dataset input (the UI's Datasets column)."""
    path = os.path.join(writer.scratch_dir(), CONFIG_FILE)
    storage.write(path, to_yaml(config).encode())
    writer.log_artifact(path)
    writer.log_dataset(info, tracking.TRAINING_CONTEXT)


def keep_epoch(config: TrainConfig, model: keras.Model, best: KeepBest, last_logs: dict, writer) -> tuple[int, dict]:
    """``(epoch, its logs)`` of the weights the run exports, loaded into the model: the best epoch's
    (``--keep best``) or the last one's. As MLflow's Keras autologging does for restored weights,
    the kept epoch's metrics are logged once more one step after the last epoch, so a run's latest
    ``val_accuracy`` is its exported model's."""
    if config.keep == "last" or best.weights is None:
        model.set_weights(evaluated_weights(model))  # the moving average's, with EMA
        return config.epochs, last_logs
    best.restore_best()
    print(f"Keeping epoch {best.epoch} (val_accuracy {best.score:.4f})", flush=True)
    kept = {key: float(best.logs[key]) for key in LOGGED_METRICS if key in best.logs}
    writer.log_metrics({**kept, "kept_epoch": best.epoch}, step=config.epochs + 1)
    return best.epoch, best.logs


def first_record_bytes(info: DatasetInfo, split: str) -> bytes:
    """The first stored JPEG of ``split`` (the serving model's input example); shards may be empty."""
    record = next(iter(tf.data.TFRecordDataset(pipeline.shard_paths(info, split))))
    return pipeline.parse(record)[0].numpy()


def start_compute(config: TrainConfig) -> tf.distribute.Strategy:
    """The precision policy, the distribution strategy (announced) and the random seed."""
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = strategies.build(config.strategy, config.cpu_replicas)
    print(f"strategy: {strategies.describe(strategy)} with {strategy.num_replicas_in_sync} replica(s)"
          f"{'' if strategies.is_chief() else ' (worker, not chief)'}", flush=True)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    return strategy


def read_dataset(config: TrainConfig) -> DatasetInfo:
    """The dataset, read once; a one-line error for a held-out set, a missing or empty split, or an
    input service that does not answer or cannot feed this run (several trainers)."""
    info = datasets.load(config.data)
    if info.pixel_stats is None:
        raise FoodpipeError(f"{config.data} is a held-out set (no train split, so no pixel statistics): models are "
                            f"evaluated on it ('foodpipe evaluate --data {config.data}'), not trained")
    for split in (schema.TRAIN, schema.VAL):
        pipeline.shard_paths(info, split)
    if config.input.input_service:
        if strategies.cluster_size() > 1:
            raise FoodpipeError("--input-service feeds one trainer: with several (TF_CONFIG) their epochs would "
                                "differ in steps; train without it, or on one machine's GPUs")
        service.check_reachable(config.input.input_service)
    return info


def resume(checkpoint: ResumableCheckpoint | None, model: keras.Model) -> tuple[int, dict, str | None]:
    """``(epochs done, history, MLflow run id)`` of the checkpointed run, loaded into ``model``
    (with the callbacks' state); ``(0, {}, None)`` for a new run."""
    state = checkpoint.restore(model) if checkpoint else None
    if not state:
        return 0, {}, None
    print(f"Resumed from epoch {state['epoch']} ({checkpoint.directory})", flush=True)
    return state["epoch"], state["extra"].get("history", {}), state["extra"].get("run_id")


def global_batches(info: DatasetInfo, split: str, batch_size: int) -> int:
    """Global batches in one pass over ``split`` (an epoch's steps, for the train split)."""
    return math.ceil(info.count(split) / batch_size)


def fit(config: TrainConfig, strategy, model: keras.Model, info: DatasetInfo, initial_epoch: int, callbacks,
        progress: bool = True, writer=None) -> dict:
    """Train from ``initial_epoch``; returns the last epoch's logs (with val's confusion matrix,
    evaluated here if no epoch was left to run)."""
    steps_per_epoch = global_batches(info, schema.TRAIN, config.input.batch_size)
    multi_worker = strategies.cluster_size() > 1
    address = config.input.input_service
    watch = service.StallWatch(address, config.input.input_service_timeout, lambda: writer.finish("FAILED")) \
        if address else None
    validation_steps = global_batches(info, schema.VAL, config.input.batch_size) if multi_worker else None
    train_data, val_data = distributed_datasets(strategy, config, config.input_config(), info, multi_worker,
                                                steps_done=initial_epoch * steps_per_epoch)
    mixing = Mixing(info.num_classes, config.label_smoothing, config.mixup, config.cutmix, config.seed)
    loop = DistributedLoop(model, strategy, config.input.batch_size, config.jit_compile, mixing)
    logs = loop.fit(train_data, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                    validation_data=val_data, validation_steps=validation_steps, callbacks=callbacks,
                    progress=progress, one_pass=watch)
    if logs:
        return logs
    with averaged_weights(model):
        return loop.evaluate(val_data, validation_steps)


def train_and_evaluate(config: TrainConfig, writer=None, progress: bool = True, callbacks: list = ()) -> dict:
    """Train, log and export as ``config`` says; ``progress``: per-step progress (see ``loop.StepProgress``);
    ``callbacks``: Keras callbacks run after the trainer's own each epoch (an exception with a
    ``run_status`` attribute ends the run with that status instead of FAILED)."""
    strategy = start_compute(config)
    chief = strategies.is_chief()
    info = read_dataset(config)
    best = KeepBest(keep_weights=config.keep == "best")
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr, verbose=1) \
        if config.lr_schedule == "plateau" else None
    checkpoint = ResumableCheckpoint(config.checkpoint_dir, best, plateau, writer=chief) \
        if config.checkpoint_dir else None  # its folder checked before any MLflow store is made or run started
    writer = writer or make_writer(config, chief)
    with strategy.scope():
        model = build_model(config, info.num_classes, info.pixel_stats,
                            global_batches(info, schema.TRAIN, config.input.batch_size))

    initial_epoch, history, previous_run = resume(checkpoint, model)
    params = {**config.params(), "dataset_metadata_sha256": info.sha256}
    run_id = writer.start(params, run_tags(strategy), run_id=previous_run)
    if previous_run is None:  # a resumed run logged them when it started
        log_inputs(writer, config, info)

    extra, callbacks = list(callbacks), [EpochLogger(writer, history), best] + ([plateau] if plateau else [])
    if plateau and config.warmup:
        callbacks.insert(0, EpochWarmup(config.lr, config.warmup))
    if checkpoint:
        checkpoint.extra = {"run_id": run_id, "history": history}
        callbacks.append(checkpoint)
    callbacks += extra
    try:
        last_logs = fit(config, strategy, model, info, initial_epoch, callbacks, progress, writer)
        kept_epoch, kept_logs = keep_epoch(config, model, best, last_logs, writer)
        model_uri = log_outputs(writer, model, config, info, history, kept_logs) if chief else None
    except tf.errors.OpError as exc:
        writer.finish("FAILED")
        explained = explain_input_error(info, exc, config.input.input_service)
        if explained is exc:
            raise
        raise explained from None
    except BaseException as exc:
        writer.finish(getattr(exc, "run_status", "FAILED"))
        raise
    writer.finish("FINISHED")
    if checkpoint:
        checkpoint.clear()
    return {"run_id": run_id, "model_uri": model_uri, "val_accuracy": float(kept_logs["val_accuracy"]),
            "epochs": config.epochs, "kept_epoch": kept_epoch, "steps": int(model.optimizer.iterations.numpy()),
            "weights_sha256": weights_digest(model)}
