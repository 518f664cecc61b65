"""The settings of the commands that have no library config of their own. A setting another
config already defines (``--data``, ``--image-size``…) is taken from it with ``like``, so each
default and help text is written once. ``train`` uses ``trainer.config.TrainConfig``, ``preprocess``
``beam_pipelines.config.PreprocessConfig`` and ``synth`` ``foodpipe.tools.synth.SynthConfig``."""

import dataclasses
import socket

from beam_pipelines.config import PreprocessConfig
from foodpipe import schema
from foodpipe.config import like, setting
from foodpipe.errors import FoodpipeError
from foodpipe.tools.upload import DEFAULT_WORKERS
from tfdata.config import InputConfig
from trainer.config import TTA, TrainConfig

MODEL_URI_HELP = ("runs:/RUN/model, models:/NAME/VERSION, models:/NAME@ALIAS, an MLflow model folder or a "
                  ".keras file")


def check_port(port: int, lowest: int = 0, highest: int = 65535) -> None:
    """A one-line error for a port out of range (a socket would take it modulo 65536)."""
    if not lowest <= port <= highest:
        raise FoodpipeError(f"port must be between {lowest} and {highest}, got {port}")


@dataclasses.dataclass(frozen=True)
class S3ServerConfig:
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(9000, "port to listen on; 0 picks a free one (printed)")

    def __post_init__(self):
        check_port(self.port)


@dataclasses.dataclass(frozen=True)
class UploadConfig:
    src: str = setting(help="a folder in Food-101 layout, or the official food-101.tar.gz", positional=True)
    dest: str = setting(help="s3://bucket/prefix", positional=True)
    workers: int = setting(DEFAULT_WORKERS, "parallel uploads")
    create_bucket: bool = setting(False, "create the bucket if it does not exist")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    model: str = setting(help=MODEL_URI_HELP)
    data: str = like(TrainConfig, "data")
    split: str = setting(schema.TEST, "the split to evaluate", choices=schema.SPLITS)
    batch_size: int = like(InputConfig, "batch_size", help="images per batch")
    tta: str = setting(TTA[0], "test-time augmentation: flip averages each image's and its mirror image's "
                               "probabilities", choices=TTA)


@dataclasses.dataclass(frozen=True)
class SelectConfig:
    experiment: str = setting(help="MLflow experiment name")
    metric: str = setting("val_accuracy", "any logged metric; the lowest wins for names ending in loss or ece")
    register: str | None = setting(None, "also register its model in the MLflow Model Registry", metavar="NAME")
    alias: str | None = setting(None, "with --register: the registry alias moved to the new version, so that "
                                      "models:/NAME@ALIAS names it (default champion)")


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    images: list = setting(help="image files (JPEG, PNG, ...), local or s3://", positional=True, nargs="+",
                           metavar="IMAGE")
    model: str = setting(help="a model URI, as for evaluate")
    top_k: int = setting(1, "classes shown per image")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    workdir: str = setting("demo-output", "where the demo's files go (made anew)")
    per_class: int = setting(120, "images per class of the demo's data set")
    epochs: int = setting(6, "training epochs of the demo's model")
    image_size: int = setting(64, "side of the demo model's input, in pixels (small, so the demo takes minutes)")


@dataclasses.dataclass(frozen=True)
class BenchPreprocessConfig:
    input: str = like(PreprocessConfig, "input", parse=None)
    runner: str | None = setting(None, "the job's Beam runner (default: the DirectRunner, one worker per core)")
    dask_client_address: str | None = setting(None, "with --runner DaskRunner: the scheduler, tcp://HOST:PORT")
    direct_num_workers: int | None = setting(None, "DirectRunner worker processes (default: one per core)")
    repeats: int = setting(1, "runs of the job and of the loop, alternated; the figures are each one's median "
                              "run's")
    split_file: str | None = like(PreprocessConfig, "split_file", help="the job's and the loop's --split-file "
                                                                       "(default: fractions)")
    group_pattern: str | None = like(PreprocessConfig, "group_pattern", help="the job's and the loop's "
                                                                             "--group-pattern")


@dataclasses.dataclass(frozen=True)
class BenchInputConfig:
    data: str = like(TrainConfig, "data")
    image_size: int = like(InputConfig, "image_size")
    batch_size: int = like(InputConfig, "batch_size")
    images: int = setting(2000, "images timed per pipeline after warm-up")
    seed_images: int = setting(256, "images timed for the (slow) seed baseline")
    input_service: str | None = like(InputConfig, "input_service", help="also time the train view made by this "
                                     "tf.data service (grpc://HOST:PORT; its workers 'foodpipe input-service worker')")


@dataclasses.dataclass(frozen=True)
class BenchTrainConfig:
    data: str = like(TrainConfig, "data")
    model: str = like(TrainConfig, "model")
    image_size: int = like(InputConfig, "image_size")
    batch_size: int = like(InputConfig, "batch_size")
    steps: int = setting(20, "steps timed per input, after warm-up")
    mixed_precision: bool = like(TrainConfig, "mixed_precision")
    jit_compile: bool = like(TrainConfig, "jit_compile")


@dataclasses.dataclass(frozen=True)
class DispatcherConfig:
    port: int = setting(5050, "port to listen on (its workers' presence: the next one)")
    work_dir: str | None = setting(None, "journal the dispatcher's state here (local or s3://), so that a restarted "
                                         "dispatcher carries on where it was")

    def __post_init__(self):
        check_port(self.port, lowest=1, highest=65534)


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    dispatcher: str = setting(help="the dispatcher, HOST:PORT or grpc://HOST:PORT")
    port: int = setting(5052, "port the trainers fetch batches from; 0 picks a free one (printed)")
    address: str = setting(socket.gethostname(), "host name by which trainers reach this worker (this "
                                                 "machine's name)")

    def __post_init__(self):
        check_port(self.port)
