"""Keras models: ``resnet`` (the seed's from-scratch CNN) and ``nasnet`` (NASNetMobile + the same head)."""

from models.registry import MODELS, build

__all__ = ["MODELS", "build"]
