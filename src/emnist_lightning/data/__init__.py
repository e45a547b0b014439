"""EMNIST data: labels, IDX files, sampling, augmentation and the LightningDataModule."""

from emnist_lightning.moved_modules import lazy_names

# `emnist_lightning.data.EMNISTDataModule` was a module attribute before the regrouping.
__getattr__ = lazy_names(__name__, {"EMNISTDataModule": "emnist_lightning.data.datamodule"})
