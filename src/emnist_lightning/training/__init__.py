"""The training run: build, fit, test, write artifacts; its callbacks and checkpoint I/O."""

from emnist_lightning.moved_modules import lazy_names

# `from emnist_lightning.training import train` keeps working (it was a module before).
__getattr__ = lazy_names(__name__, {"train": "emnist_lightning.training.run"})
