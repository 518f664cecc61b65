"""Models by name, so configs and command lines can choose one."""

from models.nasnet import build_nasnet
from models.resnet import build_resnet

MODELS = {"resnet": build_resnet, "nasnet": build_nasnet}


def build(name: str, num_classes: int, image_size: int, **hyperparameters):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes, image_size, **hyperparameters)
