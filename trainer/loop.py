"""The training loop: ``strategy.run`` steps, the same code for one device, several GPUs and
several workers.

Keras 3's ``fit`` does not work under MultiWorkerMirroredStrategy (keras-team/keras#20585,
tensorflow/tensorflow#72388), so the trainer runs its own loop over the compiled Keras model and
drives ordinary Keras callbacks (learning-rate annealing, logging, checkpoints) itself.
Per-example losses are summed and divided by the *global* batch size, so gradients summed across
replicas are the gradients of the global batch's mean loss. Steps sum the loss and a confusion
matrix across replicas; accuracy is read from the matrix (``metrics.accuracy``), as ``evaluate``
reads it, and the kept epoch's val matrix is the run's confusion-matrix plot, with no second pass.

With soft targets (label smoothing, mixup, CutMix: ``trainer.mixing``) the train loss is the
categorical cross-entropy against them, and train accuracy counts the dominant target. With an
exponential moving average of the weights (the optimizer's ``use_ema``), validation and the
exported weights are the average's (``averaged_weights``); training goes on from the raw weights.
"""

import contextlib
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from foodpipe import logs
from trainer import metrics
from trainer.mixing import Mixing

SUM = tf.distribute.ReduceOp.SUM
CONFUSION = "confusion_matrix"


class StepProgress:
    """Progress within an epoch: step, images/s and ETA. On a terminal a line redrawn in place after
    every step; otherwise (a log, a pipe) a line every ``FOODPIPE_PROGRESS_SECONDS`` seconds
    (default 10), as Keras' progress bar does."""

    def __init__(self, epoch: int, epochs: int, steps: int, batch_size: int, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.interval = logs.progress_seconds()
        self.prefix, self.steps, self.batch_size = f"Epoch {epoch}/{epochs}", steps, batch_size
        self.started = self.shown = time.perf_counter()

    def update(self, step: int) -> None:
        now = time.perf_counter()
        if not self.tty and now - self.shown < self.interval:
            return
        self.shown = now
        elapsed = max(now - self.started, 1e-9)
        eta = round(elapsed / step * max(0, self.steps - step))
        line = (f"{self.prefix} - step {step}/{self.steps} - {step * self.batch_size / elapsed:.1f} img/s - "
                f"ETA {eta // 60}:{eta % 60:02d}")
        self.stream.write(f"\r{line}\033[K" if self.tty else f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:  # the epoch's own line replaces the bar
            self.stream.write("\r\033[K")
            self.stream.flush()


def uses_ema(model: keras.Model) -> bool:
    return bool(getattr(model.optimizer, "use_ema", False))


@contextlib.contextmanager
def averaged_weights(model: keras.Model):
    """The optimizer's moving average of the weights in the model for the block (no-op without EMA)."""
    if not uses_ema(model):
        yield
        return
    swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=False)
    swap.set_model(model)
    swap.on_test_begin()  # the average in, the raw weights kept in its place
    try:
        yield
    finally:
        swap.on_test_end()


def evaluated_weights(model: keras.Model) -> list:
    """The weights validation scores and the run exports: the moving average's with EMA."""
    with averaged_weights(model):
        return model.get_weights()


class DistributedLoop:
    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy, global_batch_size: int,
                 jit_compile: bool = False, mixing: Mixing | None = None):
        self.model = model
        self.strategy = strategy
        self.global_batch_size = global_batch_size
        self.num_classes = int(model.output.shape[-1])
        self.mixing = mixing if mixing is not None and mixing.soft else None
        self._gradients = tf.function(self._compute_gradients, jit_compile=jit_compile)
        self.train_step = tf.function(self._distributed_train_step)  # one step: summed loss, confusion matrix
        self._batch_step = tf.function(self._distributed_batch_step)  # the same on a batch fetched outside
        self._eval_step = tf.function(self._distributed_eval_step)
        self._average_state = tf.function(self._distributed_average_state)

    def _per_example(self, images, labels, training: bool):
        """``(losses, predicted classes)``: Keras' loss, as ``compile`` would compute it."""
        probabilities = self.model(images, training=training)
        losses = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
        return tf.cast(losses, tf.float32), tf.argmax(probabilities, axis=-1)

    def _confusion(self, labels, predictions, weights=None):
        return tf.math.confusion_matrix(labels, predictions, self.num_classes, weights=weights, dtype=tf.float32)

    def _soft_per_example(self, images, labels):
        """``(losses, predicted classes, dominant target classes)`` against ``self.mixing``'s targets."""
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        images, targets = self.mixing(images, labels, self.model.optimizer.iterations, replica)
        probabilities = self.model(images, training=True)
        losses = keras.losses.categorical_crossentropy(targets, probabilities)
        return tf.cast(losses, tf.float32), tf.argmax(probabilities, axis=-1), tf.argmax(targets, axis=-1)

    def _compute_gradients(self, images, labels):
        optimizer = self.model.optimizer
        with tf.GradientTape() as tape:
            if self.mixing:
                losses, predictions, labels = self._soft_per_example(images, labels)
            else:
                losses, predictions = self._per_example(images, labels, training=True)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=self.global_batch_size)
            if self.model.losses:  # regularizers, once per replica
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss  # mixed precision
        gradients = tape.gradient(scaled, self.model.trainable_variables)
        return gradients, tf.reduce_sum(losses), self._confusion(labels, predictions)

    def _replica_train_step(self, images, labels):
        gradients, loss_sum, confusion = self._gradients(images, labels)
        self.model.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return loss_sum, confusion

    def _replica_eval_step(self, images, labels):
        """Sums over the real examples: padding (``pipeline.PADDING_LABEL``, label < 0) weighs 0."""
        weights = tf.cast(labels >= 0, tf.float32)
        labels = tf.maximum(labels, 0)
        losses, predictions = self._per_example(images, labels, training=False)
        return tf.reduce_sum(losses * weights), self._confusion(labels, predictions, weights)

    def _distributed_train_step(self, iterator):
        return self._distributed_batch_step(*next(iterator))

    def _distributed_batch_step(self, images, labels):
        results = self.strategy.run(self._replica_train_step, args=(images, labels))
        return [self.strategy.reduce(SUM, value, axis=None) for value in results]

    def one_pass(self, dataset, watch):
        """The train steps of one pass over a finite distributed dataset (the input service's
        epoch), each batch fetched under ``watch`` (``tfdata.service.StallWatch``)."""
        iterator = iter(dataset)
        while True:
            with watch:
                batch = next(iterator, None)
            if batch is None:
                return
            yield self._batch_step(*batch)

    def _distributed_eval_step(self, batch):
        results = self.strategy.run(self._replica_eval_step, args=batch)
        return [self.strategy.reduce(SUM, value, axis=None) for value in results]

    def _distributed_average_state(self):
        """Average the non-trainable variables (BatchNorm moving statistics) across replicas.

        Each replica updates them from its own batches, so without this every worker would end
        with (and save) its own statistics; trainable variables are kept identical by the optimizer.
        """
        state = self.model.non_trainable_variables

        def replica_values():
            context = tf.distribute.get_replica_context()
            return [context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.identity(v.value)) for v in state]

        averaged = self.strategy.run(replica_values)
        for variable, value in zip(state, averaged):
            variable.assign(self.strategy.experimental_local_results(value)[0])

    @staticmethod
    def _metrics(totals, prefix: str = "") -> dict:
        """Mean loss and accuracy from the summed loss and the confusion matrix; the matrix itself
        (numpy) under ``PREFIXconfusion_matrix``."""
        loss_sum, confusion = float(totals[0]), np.rint(totals[1].numpy()).astype(np.int64)
        return {f"{prefix}loss": loss_sum / max(int(confusion.sum()), 1),
                f"{prefix}accuracy": metrics.accuracy(confusion),
                f"{prefix}{CONFUSION}": confusion}

    def _zeros(self):
        return [tf.constant(0.0), tf.zeros((self.num_classes, self.num_classes))]

    def evaluate(self, dataset, steps: int | None = None) -> dict:
        """Mean loss, accuracy and the confusion matrix over ``steps`` batches of ``dataset`` (all
        of it when None)."""
        totals = self._zeros()
        for step, batch in enumerate(dataset):
            if steps is not None and step >= steps:
                break
            totals = [a + b for a, b in zip(totals, self._eval_step(batch))]
        return self._metrics(totals, "val_")

    def fit(self, train_data, epochs: int, steps_per_epoch: int, initial_epoch: int = 0, validation_data=None,
            validation_steps: int | None = None, callbacks=(), progress: bool = True, one_pass=None) -> dict:
        """Train from ``initial_epoch`` to ``epochs``; returns the last epoch's logs. The callbacks'
        logs hold ``loss``, ``accuracy``, ``confusion_matrix`` and the same with ``val_``.

        ``train_data`` is endless and an epoch is ``steps_per_epoch`` steps; or, with ``one_pass``
        (a ``tfdata.service.StallWatch``), finite and an epoch is one pass over it
        (``steps_per_epoch`` then only sizes the progress line)."""
        callback_list = keras.callbacks.CallbackList(list(callbacks), model=self.model)
        iterator = None if one_pass else iter(train_data)
        logs = {}
        callback_list.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            started = time.perf_counter()
            totals = self._zeros()
            bar = StepProgress(epoch + 1, epochs, steps_per_epoch, self.global_batch_size) if progress else None
            steps = self.one_pass(train_data, one_pass) if one_pass else \
                (self.train_step(iterator) for _ in range(steps_per_epoch))
            for step, results in enumerate(steps):
                totals = [a + b for a, b in zip(totals, results)]
                if bar:
                    bar.update(step + 1)
            if bar:
                bar.close()
            logs = self._metrics(totals)
            if self.strategy.num_replicas_in_sync > 1 and self.model.non_trainable_variables:
                self._average_state()
            if validation_data is not None:
                with averaged_weights(self.model):
                    logs.update(self.evaluate(validation_data, validation_steps))
            shown = " - ".join(f"{key}: {value:.4f}" for key, value in logs.items() if not key.endswith(CONFUSION))
            print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - started:.1f}s - {shown}", flush=True)
            callback_list.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        callback_list.on_train_end(logs)
        return logs
