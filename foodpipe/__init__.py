"""foodpipe: Food-101 image classification built on TensorFlow's data stack."""

__version__ = "0.1.0"
