"""Keras models: the from-scratch ResNet-style CNN and NASNetMobile (see the issue tracker)."""
