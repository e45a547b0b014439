"""Train, tune and use handwritten-character recognizers on EMNIST."""

__version__ = "0.1.0"
