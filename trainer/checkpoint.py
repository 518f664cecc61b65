"""Resumable training: the whole training state after every epoch, local or on ``s3://``.

Each epoch writes ``epoch-K.weights.h5`` (model and optimizer variables, learning rate included)
and then ``state.json``, which names it: ``state.json`` is the commit point, so a process killed
while writing weights resumes from the previous epoch. The best epoch so far (``--keep best``) is
kept beside it as ``best-epoch-K.weights.h5``, named with its metrics in ``state.json``, so a resumed run
exports the same epoch an uninterrupted one would. The learning rate's state travels too: a
schedule's position is the optimizer's step count (in the weights file); ReduceLROnPlateau's
counters are in ``state.json``. So is the position in the data: the train stream's order depends on
the seed alone, and the resumed run skips the epochs' worth of examples already consumed. Only the chief writes; every worker reads.

Why not ``tf.train.Checkpoint``: Keras 3's weights file already holds the model and optimizer
variables, loads into a model built under any strategy, and goes to ``s3://`` like every other file
here; ``state.json`` written last gives the commit point that ``CheckpointManager``'s index file
would, plus the bookkeeping that is not a variable.
A run that finishes removes its checkpoint, so the same command later starts a new run.
"""

import json
import logging
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from foodpipe import uri

log = logging.getLogger(__name__)
STATE_FILE = "state.json"


class ResumableCheckpoint(keras.callbacks.Callback):
    """``best``: the run's ``KeepBest`` callback and ``plateau`` its ``ReduceLROnPlateau`` (or None),
    both placed before this one: their state is saved and restored too."""

    PLATEAU_STATE = ("wait", "best", "cooldown_counter")

    def __init__(self, directory: str, best, plateau=None, writer: bool = True):
        super().__init__()
        self.directory = directory
        self.best = best
        self.plateau = plateau
        self.writer = writer
        self._restored_plateau: dict | None = None
        self._state_path = uri.join(directory, STATE_FILE)
        self._scratch = tempfile.mkdtemp(prefix="foodpipe-ckpt-")
        self.extra: dict = {}  # saved with the state (the MLflow run id), returned by restore()

    def read_state(self) -> dict | None:
        if not tf.io.gfile.exists(self._state_path):
            return None
        with tf.io.gfile.GFile(self._state_path, "r") as f:
            return json.loads(f.read())

    def restore(self, model: keras.Model) -> dict | None:
        """Load the last committed epoch into ``model`` (compiled); returns the saved state or None."""
        state = self.read_state()
        if state is None:
            return None
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        local = os.path.join(self._scratch, "restore.weights.h5")
        if state.get("best_weights"):
            tf.io.gfile.copy(uri.join(self.directory, state["best_weights"]), local, overwrite=True)
            model.load_weights(local)
            self.best.epoch, self.best.logs, self.best.weights = state["best_epoch"], state["best_logs"], \
                model.get_weights()
        tf.io.gfile.copy(uri.join(self.directory, state["weights"]), local, overwrite=True)
        model.load_weights(local)
        os.remove(local)
        self.extra = state.get("extra", {})
        self._restored_plateau = state.get("plateau")
        return state

    def on_train_begin(self, logs=None):
        # ReduceLROnPlateau resets its counters when training begins (it comes first): set them back.
        if self.plateau is not None and self._restored_plateau:
            for name, value in self._restored_plateau.items():
                setattr(self.plateau, name, value)

    def on_epoch_end(self, epoch, logs=None):
        if not self.writer:
            return
        epochs_done = epoch + 1
        name = f"epoch-{epochs_done:05d}.weights.h5"
        local = os.path.join(self._scratch, name)
        self.model.save_weights(local, overwrite=True)
        tf.io.gfile.makedirs(self.directory)
        tf.io.gfile.copy(local, uri.join(self.directory, name), overwrite=True)
        previous = self.read_state() or {}
        best_name = previous.get("best_weights")
        if self.best.epoch == epochs_done:  # this epoch is the best so far
            best_name = f"best-{name}"
            tf.io.gfile.copy(local, uri.join(self.directory, best_name), overwrite=True)
        os.remove(local)
        partial = self._state_path + ".partial"
        state = {"epoch": epochs_done, "weights": name, "best_epoch": self.best.epoch, "best_weights": best_name,
                 "best_logs": {key: float(value) for key, value in self.best.logs.items()}, "extra": self.extra}
        if self.plateau is not None:
            values = {name: getattr(self.plateau, name) for name in self.PLATEAU_STATE}
            state["plateau"] = {name: None if value is None else float(value) for name, value in values.items()}
        with tf.io.gfile.GFile(partial, "w") as f:
            f.write(json.dumps(state))
        tf.io.gfile.rename(partial, self._state_path, overwrite=True)  # a local rename is atomic
        for key in ("weights", "best_weights"):
            if previous.get(key) and previous[key] != state[key]:
                tf.io.gfile.remove(uri.join(self.directory, previous[key]))

    def clear(self) -> None:
        """Remove the checkpoint of a finished run."""
        shutil.rmtree(self._scratch, ignore_errors=True)
        if self.writer and tf.io.gfile.exists(self.directory):
            state = self.read_state()
            if state:
                tf.io.gfile.remove(self._state_path)
                tf.io.gfile.remove(uri.join(self.directory, state["weights"]))
                if state.get("best_weights"):
                    tf.io.gfile.remove(uri.join(self.directory, state["best_weights"]))
