"""The trainer's configuration: one typed dataclass, filled from ``foodpipe train``'s flags,
validated on creation, and logged whole to MLflow so every run can be reproduced from its params."""

import dataclasses

from foodpipe import process
from foodpipe.errors import FoodpipeError
import models
from models import defaults as model_defaults
from tfdata.config import FRAMINGS, POLICIES, InputConfig

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("cosine", "plateau", "constant")
KEEP = ("best", "last")
_INPUT = InputConfig()  # the input pipeline's defaults, used as the trainer's
DEFAULT_EXPERIMENT = "foodpipe"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: str
    model: str = "resnet"
    image_size: int = _INPUT.image_size
    epochs: int = 30
    batch_size: int = _INPUT.batch_size  # global: each replica gets batch_size / replicas
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD only
    # cosine: linear warm-up to ``lr``, then a cosine decay to 0 at the last step; constant: warm-up,
    # then ``lr``; plateau: warm-up, then the seed's annealing, ReduceLROnPlateau on the training loss.
    lr_schedule: str = "cosine"
    warmup_epochs: int = 1

    @property
    def warmup(self) -> int:
        """Warm-up epochs in effect: at least one epoch runs at the full schedule."""
        return min(self.warmup_epochs, self.epochs - 1)
    lr_factor: float = 0.5  # plateau only
    lr_patience: int = 10  # plateau only
    min_lr: float = 1e-6  # plateau only
    keep: str = "best"  # which epoch's weights are exported: best val_accuracy, or the last
    # Regularisation for training from scratch on little data (0 switches each off).
    weight_decay: float = 0.0  # decoupled (Adam becomes AdamW); biases and BatchNorm spared
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup (trainer.mixing)
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix; with mixup, one of the two per batch
    ema: float = 0.0  # momentum of the weights' moving average, which is validated and exported
    # Model hyperparameters: a flag for each keyword of every model builder (which model takes which
    # is read from the builders' signatures, see ``models.hyperparameters``).
    num_blocks: int = model_defaults.NUM_BLOCKS
    filters: int = model_defaults.FILTERS
    dense_units: int = model_defaults.DENSE_UNITS
    dropout: float = model_defaults.DROPOUT
    leaky_slope: float = model_defaults.LEAKY_SLOPE
    bn_momentum: float = model_defaults.BN_MOMENTUM  # resnet
    weights: str | None = "imagenet"  # nasnet: "imagenet", None or a local weights file
    freeze_fraction: float = model_defaults.FREEZE_FRACTION
    # Input pipeline: how the model sees an image, and the train view's random changes to it.
    framing: str = _INPUT.framing
    eval_crop_fraction: float = _INPUT.eval_crop_fraction
    crop_area_min: float = _INPUT.crop_area[0]
    crop_aspect_max: float = _INPUT.crop_aspect[1]
    augment: bool = True  # False switches every augmentation below off (the random window stays)
    flip: bool = _INPUT.flip
    rotate_degrees: float = _INPUT.rotate_degrees
    brightness_contrast: float = _INPUT.brightness_contrast
    noise_std: float = _INPUT.noise_std
    blur: bool = _INPUT.blur
    augment_probability: float = _INPUT.augment_probability
    auto_augment: str = _INPUT.auto_augment
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
            (self.model in models.NAMES, f"unknown model {self.model!r}: choose one of {', '.join(models.NAMES)}"),
            (self.optimizer in OPTIMIZERS,
             f"unknown optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}"),
            (self.strategy in STRATEGIES, f"unknown strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}"),
            (self.lr_schedule in LR_SCHEDULES,
             f"unknown lr_schedule {self.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}"),
            (self.keep in KEEP, f"unknown keep {self.keep!r}: choose one of {', '.join(KEEP)}"),
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must not be negative, got {self.warmup_epochs}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (0 < self.lr_factor < 1, f"lr_factor must be in (0, 1), got {self.lr_factor}"),
            (self.lr_patience >= 1, f"lr_patience must be at least 1, got {self.lr_patience}"),
            (self.crop_aspect_max >= 1, f"crop_aspect_max must be at least 1, got {self.crop_aspect_max}"),
            (self.cpu_replicas >= 1, f"cpu_replicas must be at least 1, got {self.cpu_replicas}"),
            (self.weight_decay >= 0, f"weight_decay must not be negative, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.mixup >= 0, f"mixup must not be negative, got {self.mixup}"),
            (self.cutmix >= 0, f"cutmix must not be negative, got {self.cutmix}"),
            (0 <= self.ema < 1, f"ema must be in [0, 1), got {self.ema}"),
            (bool(self.experiment), "experiment must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise FoodpipeError(message)
        self.input_config()  # the input pipeline's own checks, now rather than at the first batch

    def input_config(self) -> InputConfig:
        """The input pipeline's config for this run (validated there)."""
        config = InputConfig(
            image_size=self.image_size, batch_size=self.batch_size, seed=self.seed, framing=self.framing,
            eval_crop_fraction=self.eval_crop_fraction, crop_area=(self.crop_area_min, 1.0),
            crop_aspect=(1 / self.crop_aspect_max, self.crop_aspect_max),
            flip=self.flip, rotate_degrees=self.rotate_degrees, brightness_contrast=self.brightness_contrast,
            noise_std=self.noise_std, blur=self.blur, augment_probability=self.augment_probability,
            auto_augment=self.auto_augment, skip_corrupt=self.skip_corrupt)
        return config if self.augment else config.without_augmentation()

    def model_hyperparameters(self) -> dict:
        """This config's values of the chosen model's hyperparameters (imports the model's code)."""
        return {name: getattr(self, name) for name in models.hyperparameters(self.model)}

    def params(self) -> dict:
        """Every value that shapes the run, for MLflow (other models' hyperparameters left out). No
        secrets live in this config."""
        skip = {name for other in models.NAMES for name in models.hyperparameters(other)} \
            - set(models.hyperparameters(self.model))
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name not in skip and field.name != "mlflow_uri"}


HELP = {
    "data": "preprocessed dataset (local path or s3://bucket/prefix)",
    "model": "resnet: the seed's from-scratch CNN; nasnet: NASNetMobile fine-tuned",
    "image_size": "side of the model's square input, in pixels",
    "epochs": "training epochs",
    "lr": "peak learning rate",
    "optimizer": "the optimizer",
    "momentum": "sgd: momentum",
    "num_blocks": "resnet: residual blocks (each after the first halves the resolution)",
    "filters": "resnet: filters of the stem and first block (doubled per block)",
    "dense_units": "units of the Dense layer before the softmax",
    "dropout": "dropout before the softmax",
    "leaky_slope": "negative slope of the LeakyReLU activations",
    "bn_momentum": "resnet: BatchNorm moving-statistics momentum (Keras' default 0.99 lags on small data sets)",
    "skip_corrupt": "skip unreadable TFRecord records instead of stopping with the shard's name",
    "mixed_precision": "float16 compute, float32 softmax and loss scaling (GPUs)",
    "jit_compile": "XLA-compile the train step",
    "experiment": "MLflow experiment",
    "run_name": "MLflow run name (default: MLflow's)",
    "seed": "seed of the weights, the data order and the augmentation",
    "batch_size": "global batch size, split across replicas",
    "lr_schedule": "cosine: warm-up, then cosine decay to 0; constant: warm-up, then lr; plateau: the seed's "
                   "ReduceLROnPlateau on the training loss",
    "warmup_epochs": "epochs of linear learning-rate warm-up from 0 (at most epochs - 1); per step for cosine "
                     "and constant, per epoch for plateau",
    "lr_factor": "plateau: multiply the learning rate by this",
    "lr_patience": "plateau: epochs without improvement before reducing",
    "min_lr": "plateau: the lowest learning rate",
    "keep": "export the weights of the epoch with the best val_accuracy, or of the last epoch",
    "framing": "how the model sees an image: squash (whole image to a square), pad (whole image, aspect "
               "kept, black borders) or crop (centred square, see --eval-crop-fraction)",
    "eval_crop_fraction": "framing crop: side of the centred square as a share of the shorter side",
    "crop_area_min": "train view: the smallest random window, as a share of the eval window's area",
    "crop_aspect_max": "train view: the window's aspect ratio is changed by a factor in [1/X, X]",
    "augment": "--no-augment switches off every augmentation below (the random window stays)",
    "flip": "random left-right mirroring (--no-flip for data whose meaning changes when mirrored)",
    "rotate_degrees": "random rotation up to this many degrees; 0 turns it off",
    "brightness_contrast": "random brightness and contrast change up to this fraction; 0 turns it off",
    "noise_std": "Gaussian noise with this standard deviation in pixel units; 0 turns it off",
    "blur": "random Gaussian blur (3-5 px kernel)",
    "augment_probability": "each augmentation but flip is applied to this share of images",
    "auto_augment": "an automatic augmentation policy on every train image: trivial (TrivialAugment: one random "
                    "operation at a random strength) or rand (RandAugment: two at strength 9/30)",
    "weight_decay": "decoupled weight decay (Adam becomes AdamW), multiplied by the learning rate; 0 turns it off",
    "label_smoothing": "share of the target spread evenly over the classes",
    "mixup": "mixup: alpha of the Beta(alpha, alpha) blend of image pairs and their targets; 0 turns it off",
    "cutmix": "CutMix: alpha of the Beta(alpha, alpha) share of a pasted box; with --mixup, one of the two per batch",
    "ema": "momentum of an exponential moving average of the weights, validated and exported (e.g. 0.99); 0 off",
    "weights": "nasnet: imagenet, none, or a local weights file",
    "freeze_fraction": "nasnet: share of base layers frozen, counted from the input",
    "strategy": "auto: multi-worker with TF_CONFIG, mirrored with several GPUs, else default",
    "cpu_replicas": "split the CPU into N logical devices (to try strategies without GPUs)",
    "checkpoint_dir": "resume from / checkpoint to this folder (local or s3://) every epoch",
    "mlflow_uri": process.MLFLOW_URI_HELP,
}


CHOICES = {"model": models.NAMES, "optimizer": OPTIMIZERS, "strategy": STRATEGIES,
           "lr_schedule": LR_SCHEDULES, "keep": KEEP, "framing": FRAMINGS, "auto_augment": POLICIES}


def add_arguments(parser) -> None:
    """One ``--flag`` per TrainConfig field (``num_blocks`` -> ``--num-blocks``, also ``--blocks``)."""
    import argparse

    for field in dataclasses.fields(TrainConfig):
        flags = [f"--{field.name.replace('_', '-')}"] + (["--blocks"] if field.name == "num_blocks" else [])
        options = {"dest": field.name, "help": HELP.get(field.name)}
        if field.name in CHOICES:  # shown in the usage; checked by TrainConfig, whose error is one line
            options["metavar"] = "{" + ",".join(CHOICES[field.name]) + "}"
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


CONFIG_FILE = "config.yaml"


def to_yaml(config: TrainConfig) -> str:
    """The run's settings as ``foodpipe train --config`` reads them: one key per flag, every value
    resolved (the tracking URI left out: it may hold credentials, and a rerun names its own)."""
    import yaml

    values = {}
    for field in dataclasses.fields(TrainConfig):
        value = getattr(config, field.name)
        if field.name == "mlflow_uri" or (value is None and field.name != "weights"):
            continue
        values[field.name] = "none" if value is None else value
    return yaml.safe_dump(values, sort_keys=False)
