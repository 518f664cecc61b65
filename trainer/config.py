"""The trainer's configuration: one typed dataclass, filled from ``foodpipe train``'s flags,
validated on creation, and logged whole to MLflow so every run can be reproduced from its params."""

import dataclasses

from foodpipe.errors import FoodpipeError

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
OPTIMIZERS = ("adam", "sgd")
DEFAULT_EXPERIMENT = "foodpipe"

# Which hyperparameters each model takes (the rest of TrainConfig is shared).
MODEL_HYPERPARAMETERS = {
    "resnet": ("num_blocks", "filters", "dense_units", "dropout", "leaky_slope"),
    "nasnet": ("weights", "freeze_fraction", "dense_units", "dropout", "leaky_slope"),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: str
    model: str = "resnet"
    image_size: int = 224
    epochs: int = 30
    batch_size: int = 64  # global: each replica gets batch_size / replicas
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD only
    # The seed's annealing: ReduceLROnPlateau on the training loss.
    lr_factor: float = 0.5
    lr_patience: int = 10
    min_lr: float = 1e-6
    # Model hyperparameters (see MODEL_HYPERPARAMETERS for which model takes which).
    num_blocks: int = 4
    filters: int = 32
    dense_units: int = 256
    dropout: float = 0.5
    leaky_slope: float = 0.1
    weights: str | None = "imagenet"  # nasnet: "imagenet", None or a local weights file
    freeze_fraction: float = 0.0
    # Input pipeline.
    augment: bool = True
    crop_area_min: float = 0.25  # random-resized crop: smallest share of the image kept
    skip_corrupt: bool = False
    # Compute.
    mixed_precision: bool = False
    jit_compile: bool = False
    strategy: str = "auto"
    cpu_replicas: int = 1  # split the CPU into this many logical devices (strategies without GPUs)
    # Bookkeeping.
    checkpoint_dir: str | None = None
    mlflow_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    run_name: str | None = None
    seed: int = 0

    def __post_init__(self):
        checks = [
            (self.model in MODEL_HYPERPARAMETERS, f"unknown model {self.model!r}: choose one of "
                                                  f"{', '.join(MODEL_HYPERPARAMETERS)}"),
            (self.optimizer in OPTIMIZERS,
             f"unknown optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}"),
            (self.strategy in STRATEGIES, f"unknown strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}"),
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (0 < self.lr_factor < 1, f"lr_factor must be in (0, 1), got {self.lr_factor}"),
            (self.lr_patience >= 1, f"lr_patience must be at least 1, got {self.lr_patience}"),
            (0 < self.crop_area_min <= 1, f"crop_area_min must be in (0, 1], got {self.crop_area_min}"),
            (self.cpu_replicas >= 1, f"cpu_replicas must be at least 1, got {self.cpu_replicas}"),
            (bool(self.experiment), "experiment must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise FoodpipeError(message)

    def model_hyperparameters(self) -> dict:
        return {name: getattr(self, name) for name in MODEL_HYPERPARAMETERS[self.model]}

    def params(self) -> dict:
        """Every value that shapes the run, for MLflow. No secrets live in this config."""
        skip = set().union(*MODEL_HYPERPARAMETERS.values()) - set(MODEL_HYPERPARAMETERS[self.model])
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name not in skip and field.name != "mlflow_uri"}


HELP = {
    "data": "preprocessed dataset (local path or s3://bucket/prefix)",
    "batch_size": "global batch size, split across replicas",
    "lr_factor": "ReduceLROnPlateau (on training loss): multiply the learning rate by this",
    "lr_patience": "ReduceLROnPlateau: epochs without improvement before reducing",
    "weights": "nasnet: imagenet, none, or a local weights file",
    "freeze_fraction": "nasnet: share of base layers frozen, counted from the input",
    "strategy": "auto: multi-worker with TF_CONFIG, mirrored with several GPUs, else default",
    "cpu_replicas": "split the CPU into N logical devices (to try strategies without GPUs)",
    "checkpoint_dir": "resume from / checkpoint to this folder (local or s3://) every epoch",
    "mlflow_uri": "tracking server or store (default: MLFLOW_TRACKING_URI, else ./mlruns)",
}


def add_arguments(parser) -> None:
    """One ``--flag`` per TrainConfig field (``num_blocks`` -> ``--num-blocks``, also ``--blocks``)."""
    import argparse

    for field in dataclasses.fields(TrainConfig):
        flags = [f"--{field.name.replace('_', '-')}"] + (["--blocks"] if field.name == "num_blocks" else [])
        options = {"dest": field.name, "help": HELP.get(field.name)}
        if field.default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = field.default
        if isinstance(field.default, bool):
            options["action"] = argparse.BooleanOptionalAction
        elif isinstance(field.default, (int, float)):
            options["type"] = type(field.default)
        parser.add_argument(*flags, **options)


def from_args(args) -> TrainConfig:
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)}
    if isinstance(values["weights"], str) and values["weights"].lower() == "none":
        values["weights"] = None
    return TrainConfig(**values)
