"""Keras models: ``resnet`` (the seed's from-scratch CNN) and ``nasnet`` (NASNetMobile + the same head)."""

from models.registry import NAMES, build, hyperparameters

__all__ = ["NAMES", "build", "hyperparameters"]
