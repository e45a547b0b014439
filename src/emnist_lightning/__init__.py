"""Train, tune and use handwritten-character recognizers on EMNIST."""

from emnist_lightning import moved_modules

__version__ = "0.1.0"

moved_modules.install()
