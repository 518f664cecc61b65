"""Each model hyperparameter's default, written once: the builders' keyword defaults and the
trainer's flags (``trainer.config``) both read them. Importing this imports no Keras."""

NUM_BLOCKS = 4  # resnet: residual blocks
FILTERS = 32  # resnet: filters of the stem and the first block
DENSE_UNITS = 256
DROPOUT = 0.2  # 0.5 until the subject-split measurements (docs/QUALITY.md): +0.10 on unseen fonts
LEAKY_SLOPE = 0.1
BN_MOMENTUM = 0.9  # resnet: BatchNorm's moving statistics (see build_resnet)
FREEZE_FRACTION = 0.0  # nasnet
