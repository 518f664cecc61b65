"""Resumable training: the whole training state after every epoch, local or on ``s3://``.

Each epoch writes ``epoch-K.weights.h5`` (model and optimizer variables, learning rate included)
and then ``state.json``, which names it: ``state.json`` is the commit point, so a process killed
while writing weights resumes from the previous epoch. Only the chief writes; every worker reads.
A run that finishes removes its checkpoint, so the same command later starts a new run.
"""

import json
import logging
import os
import tempfile

import keras
import tensorflow as tf

from foodpipe import uri

log = logging.getLogger(__name__)
STATE_FILE = "state.json"


class ResumableCheckpoint(keras.callbacks.Callback):
    def __init__(self, directory: str, writer: bool = True):
        super().__init__()
        self.directory = directory
        self.writer = writer
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
        tf.io.gfile.copy(uri.join(self.directory, state["weights"]), local, overwrite=True)
        model.load_weights(local)
        self.extra = state.get("extra", {})
        return state

    def on_epoch_end(self, epoch, logs=None):
        if not self.writer:
            return
        epochs_done = epoch + 1
        name = f"epoch-{epochs_done:05d}.weights.h5"
        local = os.path.join(self._scratch, name)
        self.model.save_weights(local, overwrite=True)
        tf.io.gfile.makedirs(self.directory)
        tf.io.gfile.copy(local, uri.join(self.directory, name), overwrite=True)
        os.remove(local)
        previous = self.read_state()
        partial = self._state_path + ".partial"
        with tf.io.gfile.GFile(partial, "w") as f:
            f.write(json.dumps({"epoch": epochs_done, "weights": name, "extra": self.extra}))
        tf.io.gfile.rename(partial, self._state_path, overwrite=True)  # a local rename is atomic
        if previous and previous["weights"] != name:
            tf.io.gfile.remove(uri.join(self.directory, previous["weights"]))

    def clear(self) -> None:
        """Remove the checkpoint of a finished run."""
        if self.writer and tf.io.gfile.exists(self.directory):
            state = self.read_state()
            if state:
                tf.io.gfile.remove(self._state_path)
                tf.io.gfile.remove(uri.join(self.directory, state["weights"]))
