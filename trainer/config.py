"""The trainer's configuration: one typed dataclass holding the input pipeline's (``InputConfig``)
and the model's (``ModelConfig``) configs, filled from ``foodpipe train``'s flags or a config file,
validated on creation, and logged whole to MLflow so every run can be reproduced from its params
and its ``config.yaml``."""

import dataclasses

from foodpipe import config as settings, process
from foodpipe.config import nested, setting
from foodpipe.errors import FoodpipeError
import models
from models.config import ModelConfig
from tfdata.config import InputConfig

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("cosine", "plateau", "constant")
KEEP = ("best", "last")
TTA = ("none", "flip")  # evaluate --tta: none, or the mean of each image's and its mirror image's probabilities


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: str = setting(help="preprocessed dataset (local path or s3://bucket/prefix)")
    model: str = setting("resnet", "resnet: the seed's from-scratch CNN; nasnet: NASNetMobile fine-tuned",
                         choices=models.NAMES)
    epochs: int = setting(30, "training epochs")
    lr: float = setting(1e-3, "peak learning rate")
    optimizer: str = setting("adam", "the optimizer", choices=OPTIMIZERS)
    momentum: float = setting(0.9, "sgd: momentum")
    lr_schedule: str = setting("cosine", "cosine: warm-up, then cosine decay to 0; constant: warm-up, then lr; "
                               "plateau: the seed's ReduceLROnPlateau on the training loss", choices=LR_SCHEDULES)
    warmup_epochs: int = setting(1, "epochs of linear learning-rate warm-up from 0 (at most epochs - 1); per step "
                                    "for cosine and constant, per epoch for plateau")
    lr_factor: float = setting(0.5, "plateau: multiply the learning rate by this")
    lr_patience: int = setting(10, "plateau: epochs without improvement before reducing")
    min_lr: float = setting(1e-6, "plateau: the lowest learning rate")
    keep: str = setting("best", "export the weights of the epoch with the best val_accuracy, or of the last epoch",
                        choices=KEEP)
    # Regularisation for training from scratch on little data (0 switches each off).
    weight_decay: float = setting(0.0, "decoupled weight decay (Adam becomes AdamW), multiplied by the learning "
                                       "rate; 0 turns it off")
    label_smoothing: float = setting(0.0, "share of the target spread evenly over the classes")
    mixup: float = setting(0.0, "mixup: alpha of the Beta(alpha, alpha) blend of image pairs and their targets; 0 "
                                "turns it off")
    cutmix: float = setting(0.0, "CutMix: alpha of the Beta(alpha, alpha) share of a pasted box; with --mixup, one "
                                 "of the two per batch")
    ema: float = setting(0.0, "momentum of an exponential moving average of the weights, validated and exported "
                              "(e.g. 0.99); 0 off")
    model_config: ModelConfig = nested(ModelConfig)
    augment: bool = setting(True, "--no-augment switches off every augmentation of the input settings (the random "
                                  "window stays)")
    input: InputConfig = nested(InputConfig)
    # Compute.
    mixed_precision: bool = setting(False, "float16 compute, float32 softmax and loss scaling (GPUs)")
    jit_compile: bool = setting(False, "XLA-compile the train step")
    strategy: str = setting("auto", "auto: multi-worker with TF_CONFIG, mirrored with several GPUs, else default",
                            choices=STRATEGIES)
    cpu_replicas: int = setting(1, "split the CPU into N logical devices (to try strategies without GPUs)")
    deterministic: bool = setting(False, "the same command on the same machine gives the same weights and metrics: "
                                         "TensorFlow op determinism and an input stream fixed by the seed (slower, "
                                         "see docs/TRAINING.md)")
    # Bookkeeping.
    checkpoint_dir: str | None = setting(None, "resume from / checkpoint to this folder (local or s3://) every "
                                               "epoch")
    mlflow_uri: str | None = setting(None, process.MLFLOW_URI_HELP)
    experiment: str = setting("foodpipe", "MLflow experiment")
    run_name: str | None = setting(None, "MLflow run name (default: MLflow's)")

    @property
    def warmup(self) -> int:
        """Warm-up epochs in effect: at least one epoch runs at the full schedule."""
        return min(self.warmup_epochs, self.epochs - 1)

    @property
    def seed(self) -> int:
        """The run's seed: of the weights, the data order and the augmentation."""
        return self.input.seed

    def __post_init__(self):
        settings.check_choices(self)
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must not be negative, got {self.warmup_epochs}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (0 < self.lr_factor < 1, f"lr_factor must be in (0, 1), got {self.lr_factor}"),
            (self.lr_patience >= 1, f"lr_patience must be at least 1, got {self.lr_patience}"),
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

    def input_config(self) -> InputConfig:
        """The input pipeline's config for this run: ``input``, without augmentation for --no-augment."""
        return self.input if self.augment else self.input.without_augmentation()

    def model_hyperparameters(self) -> dict:
        """This config's values of the chosen model's hyperparameters (imports the model's code)."""
        return {name: getattr(self.model_config, name) for name in models.hyperparameters(self.model)}

    def params(self) -> dict:
        """Every value that shapes the run, for MLflow, by setting name (other models'
        hyperparameters left out). No secrets live in this config."""
        skip = {name for other in models.NAMES for name in models.hyperparameters(other)} \
            - set(models.hyperparameters(self.model))
        return {name: value for name, value in settings.flatten(self).items()
                if name not in skip and name != "mlflow_uri"}


CONFIG_FILE = "config.yaml"


def to_yaml(config: TrainConfig) -> str:
    """The run's settings as ``foodpipe train --config`` reads them: one key per flag, every value
    resolved (the tracking URI left out: it may hold credentials, and a rerun names its own)."""
    return settings.to_yaml(config, leave_out=("mlflow_uri",))


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """``foodpipe tune``: a search space over ``train``'s settings, and every other train setting."""

    search: list = setting(help="NAME=SPACE: a train setting and its range, log:LOW:HIGH (log-uniform), LOW:HIGH "
                                "(uniform; whole numbers for an integer setting) or A,B,... (choices); repeat the "
                                "flag for each setting searched", repeat=True, metavar="NAME=SPACE")
    trials: int = setting(8, "trials of the study in all (those of earlier and parallel tune processes count)")
    study: str | None = setting(None, "Optuna study name (default: the experiment's)")
    storage: str = setting("sqlite:///foodpipe-tune.db", "Optuna storage, an RDB URL: a killed sweep resumes "
                                                         "from it, and tune processes pointed at it share its trials")
    prune: bool = setting(True, "stop a trial whose val accuracy falls below the median of earlier trials at the "
                                "same epoch (from the second half of its epochs on)")
    start_from_defaults: bool = setting(True, "a new study's first trial runs train's own values of the searched "
                                              "settings (where the space holds them), so the sweep starts from the "
                                              "default recipe")
    train: TrainConfig = nested(TrainConfig)

    def __post_init__(self):
        if self.trials < 1:
            raise FoodpipeError(f"trials must be at least 1, got {self.trials}")

    @property
    def study_name(self) -> str:
        return self.study or self.train.experiment
