"""The train split through the tf.data service: a dispatcher and input workers in other processes
(other hosts) do the input work, the trainer only receives finished batches.

Which part runs where: everything the local train pipeline does runs on the workers, the batch
augmentation (albumentations + Numba) included. A ``tf.numpy_function`` cannot travel to a worker
in another process (its dataset graph names a Python callback, ``pyfunc_N``, that only the process
which made it has), so the augmentation is called by a fixed name, ``AUGMENT_CALLBACK``, that
every ``foodpipe input-service worker`` registers when it starts (``serve_augmentation``), with the
input settings passed along as a JSON string. A plain TensorFlow worker does not have it: the
trainer stops with one line saying so. Measured (docs/BENCHMARKS.md): the trainer then spends
under a tenth of the local pipeline's CPU per image.

Each epoch is one ``distributed_epoch`` job: the dispatcher hands out the split's shard files one
by one to whichever worker asks, so an epoch sees every train record exactly once however many
workers there are. TensorFlow 2.16's dispatcher never drops a worker that died, so a job with a
task on it waits for ever: ``StallWatch`` turns that into one line.
"""

import dataclasses
import json
import os
import socket
import sys
import threading
import time

import tensorflow as tf
from tensorflow.python.ops import gen_script_ops, script_ops

from foodpipe import logs, process
from foodpipe.errors import FoodpipeError, RunFailed
from tfdata import augment
from tfdata.config import InputConfig

AUGMENT_CALLBACK = "foodpipe.augment"
REACH_TIMEOUT_S = 5.0


def host_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``grpc://HOST:PORT`` (or ``HOST:PORT``); one line for anything else."""
    rest = address.removeprefix("grpc://")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or "/" in rest:
        raise FoodpipeError(f"input service address {address!r} is not grpc://HOST:PORT")
    return host, int(port)


def check_reachable(address: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """A one-line error unless a dispatcher listens at ``address`` (``grpc://HOST:PORT``): without
    it tf.data would retry for a long time before saying anything."""
    host, port = host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise FoodpipeError(f"input service {address} is unreachable ({exc.strerror or exc}): start it with "
                            f"'foodpipe input-service dispatcher --port {port}' and at least one worker") from None


def augment_on_worker(images, config: InputConfig):
    """The graph op that calls the workers' augmentation (``serve_augmentation``) on a batch."""
    spec = json.dumps(dataclasses.asdict(config), sort_keys=True)
    augmented = gen_script_ops.py_func(input=[images, tf.constant(spec)], token=AUGMENT_CALLBACK, Tout=[tf.uint8])[0]
    augmented.set_shape(images.shape)
    return augmented


def distribute(dataset: tf.data.Dataset, address: str) -> tf.data.Dataset:
    """``dataset`` made by the service's workers, one ``distributed_epoch`` job per iteration.
    Batches travel uncompressed: uint8 pixels hardly compress, and compressing cost the trainer CPU."""
    return dataset.prefetch(tf.data.AUTOTUNE).apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC, service=address, compression=None))


class WorkerAugmentation:
    """The callback a worker registers: an ``augment.Augmenter`` per input settings seen. Each
    worker draws from its own seed (the settings' seed and the process id), so two workers do not
    repeat each other's draws."""

    def __init__(self):
        self._augmenters = {}
        self._lock = threading.Lock()
        augment.Augmenter(InputConfig())  # its imports, here: tf.data's threads importing at once deadlock

    def __call__(self, images, spec):
        key = bytes(spec)
        with self._lock:
            augmenter = self._augmenters.get(key)
            if augmenter is None:
                known = {field.name for field in dataclasses.fields(InputConfig)}  # a newer trainer's extras
                config = InputConfig(**{name: value for name, value in json.loads(key).items() if name in known})
                config = dataclasses.replace(config, seed=(config.seed * 1_000_003 + os.getpid()) % 2**31)
                augmenter = self._augmenters[key] = augment.Augmenter(config)
        return augmenter(images)


_SERVED = []  # the registry holds callbacks weakly


def serve_augmentation() -> None:
    """Register the augmentation under ``AUGMENT_CALLBACK`` in this process (a worker)."""
    if not _SERVED:
        _SERVED.append(WorkerAugmentation())
        script_ops._py_funcs._funcs[AUGMENT_CALLBACK] = _SERVED[0]  # noqa: SLF001 (no public way to name one)


class StallWatch:
    """``with watch:`` around each wait for a batch from the service: a wait longer than
    ``timeout`` seconds ends the process with one line and exit 3, after ``before_exit()`` (the
    trainer marks its MLflow run FAILED there). Ended from a watching thread: the waiting one is
    blocked inside TensorFlow and cannot be interrupted.

    Why: TensorFlow 2.16's dispatcher never takes a dead worker's tasks away, so a job that had one
    waits for it for ever (a new epoch too, until a worker is back at the same address)."""

    def __init__(self, address: str, timeout: float, before_exit=lambda: None):
        self.address, self.timeout, self.before_exit = address, timeout, before_exit
        self._since = None
        self._wake = threading.Event()
        threading.Thread(target=self._watch, name="input-service-watch", daemon=True).start()

    def __enter__(self):
        self._since = time.monotonic()
        self._wake.set()
        return self

    def __exit__(self, *exc):
        self._since = None

    def _watch(self) -> None:
        while True:
            since = self._since
            if since is None:
                self._wake.wait()
                self._wake.clear()
                continue
            left = since + self.timeout - time.monotonic()
            if left > 0:
                time.sleep(min(left, 1.0))
                continue
            print(f"{process.PREFIX} no batch from input service {logs.redact(self.address)} for {self.timeout:g} s: "
                  f"a worker went away or stopped (see the dispatcher's and workers' lines); restart it at the "
                  f"same address, then rerun to resume from the last checkpoint", file=sys.stderr, flush=True)
            self.before_exit()
            process.exit_now(RunFailed.exit_code)


def explain(error: tf.errors.OpError, address: str) -> RunFailed | None:
    """One line for the service's errors a user can act on, else None."""
    if AUGMENT_CALLBACK in error.message:
        return RunFailed(f"a worker of input service {address} cannot run foodpipe's augmentation: start the "
                         f"workers with 'foodpipe input-service worker', not a plain TensorFlow worker")
    return None
