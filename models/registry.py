"""Models by name, so configs and command lines can choose one.

A builder's keyword parameters, apart from ``COMMON``, are the model's hyperparameters: the trainer
reads them from the builder's signature. Builders are imported when used, since importing Keras
takes seconds and naming a model (``foodpipe --help``, config checks) must not.
"""

import importlib
import inspect

BUILDERS = {"resnet": "models.resnet:build_resnet", "nasnet": "models.nasnet:build_nasnet"}
NAMES = tuple(BUILDERS)
COMMON = ("num_classes", "image_size", "pixel_stats")  # what every builder takes from the data


def builder(name: str):
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(NAMES)}")
    module, function = BUILDERS[name].split(":")
    return getattr(importlib.import_module(module), function)


def hyperparameters(name: str) -> dict:
    """``{parameter: default}`` of the model's own hyperparameters."""
    return {parameter.name: parameter.default for parameter in inspect.signature(builder(name)).parameters.values()
            if parameter.name not in COMMON}


def build(name: str, num_classes: int, image_size: int, **hyperparameters):
    return builder(name)(num_classes, image_size, **hyperparameters)
