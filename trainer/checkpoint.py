"""Resumable training: the whole training state after every epoch, local or on ``s3://``.

Each epoch writes ``epoch-K.weights.h5`` (model and optimizer variables, learning rate included)
and then ``state.json``, which names it: ``state.json`` is the commit point, so a process killed
while writing weights resumes from the previous epoch. The best epoch so far (``--keep best``) is
kept beside it as ``best-epoch-K.weights.h5``, named with its metrics in ``state.json``, so a resumed run
exports the same epoch an uninterrupted one would. The learning rate's state travels too: a
schedule's position is the optimizer's step count (in the weights file); ReduceLROnPlateau's
counters are in ``state.json``. So is the position in the data: the train stream's order depends on
the seed alone, and the resumed run skips the epochs' worth of examples already consumed. Only
the chief writes; every worker reads.

Why not ``tf.train.Checkpoint``: Keras 3's weights file already holds the model and optimizer
variables, loads into a model built under any strategy, and goes to ``s3://`` through
``foodpipe.storage`` like every other file here; ``state.json`` written last (whole, in one PUT
or one rename) gives the commit point that ``CheckpointManager``'s index file would, plus the
bookkeeping that is not a variable.
A run that finishes removes its checkpoint, so the same command later starts a new run.
"""

import logging
import os

import keras

from foodpipe import scratch, storage, uri

log = logging.getLogger(f"foodpipe.{__name__}")  # under the logger the commands show
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
        if writer:  # before training: a folder that cannot be written is one line now, not after an epoch
            storage.check_folder(directory, f"writing checkpoints to {directory}", must_exist=False)
        self._scratch = scratch.make("ckpt")
        self.extra: dict = {}  # saved with the state (the MLflow run id), returned by restore()

    def read_state(self) -> dict | None:
        try:
            return storage.read_json(self._state_path)
        except FileNotFoundError:
            return None

    def _download(self, name: str) -> str:
        """A local copy of the checkpoint's file ``name``, for Keras to load."""
        local = os.path.join(self._scratch, "restore.weights.h5")
        storage.write(local, storage.read(uri.join(self.directory, name)))
        return local

    def restore(self, model: keras.Model) -> dict | None:
        """Load the last committed epoch into ``model`` (compiled); returns the saved state or None."""
        state = self.read_state()
        if state is None:
            return None
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        if state.get("best_weights"):
            model.load_weights(self._download(state["best_weights"]))
            self.best.restore_state(state["best_epoch"], state["best_logs"], model.get_weights())
        model.load_weights(self._download(state["weights"]))
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
        weights = storage.read(local)
        os.remove(local)
        storage.write(uri.join(self.directory, name), weights)
        previous = self.read_state() or {}
        best_name = previous.get("best_weights")
        if self.best.keep_weights and self.best.epoch == epochs_done:  # this epoch is the best so far
            best_name = f"best-{name}"
            storage.write(uri.join(self.directory, best_name), weights)
        state = {"epoch": epochs_done, "weights": name, "best_epoch": self.best.epoch, "best_weights": best_name,
                 "best_logs": self.best.logs_state(), "extra": self.extra}
        if self.plateau is not None:
            values = {name: getattr(self.plateau, name) for name in self.PLATEAU_STATE}
            state["plateau"] = {name: None if value is None else float(value) for name, value in values.items()}
        storage.write_json(self._state_path, state)  # all or nothing, on S3 and locally
        storage.delete([uri.join(self.directory, previous[key]) for key in ("weights", "best_weights")
                        if previous.get(key) and previous[key] != state[key]])

    def clear(self) -> None:
        """Remove the checkpoint of a finished run."""
        scratch.remove(self._scratch)
        state = self.read_state() if self.writer else None
        if state:
            storage.delete([self._state_path] + [uri.join(self.directory, state[key])
                                                 for key in ("weights", "best_weights") if state.get(key)])
