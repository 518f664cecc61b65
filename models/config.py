"""The models' hyperparameters, each defined once with its help: the builders' keyword defaults and
the trainer's flags (``trainer.config``) both read them. Which model takes which is read from the
builders' signatures (``models.hyperparameters``). Importing this imports no Keras."""

import dataclasses

from foodpipe.config import setting


def weights_file(text: str) -> str | None:
    """``--weights``' text: ``none`` is None (no pretrained weights)."""
    return None if text.lower() == "none" else text


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    num_blocks: int = setting(4, "resnet: residual blocks (each after the first halves the resolution)",
                              aliases=("--blocks",))
    filters: int = setting(32, "resnet: filters of the stem and first block (doubled per block)")
    dense_units: int = setting(256, "units of the Dense layer before the softmax")
    # 0.5 until the subject-split measurements (docs/QUALITY.md): 0.2 gains 0.10 on unseen fonts.
    dropout: float = setting(0.2, "dropout before the softmax")
    leaky_slope: float = setting(0.1, "negative slope of the LeakyReLU activations")
    bn_momentum: float = setting(0.9, "resnet: BatchNorm moving-statistics momentum (Keras' default 0.99 lags on "
                                      "small data sets)")
    weights: str | None = setting("imagenet", "nasnet: imagenet, none, or a local weights file", parse=weights_file)
    freeze_fraction: float = setting(0.0, "nasnet: share of base layers frozen, counted from the input")
