"""The EMNIST LightningDataModule: official files via torchvision, held in memory by default."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler, Subset
from torchvision.datasets import EMNIST
from torchvision.transforms import v2

from emnist_lightning.data.corrections import read_corrections
from emnist_lightning.data.idx_files import (
    check_label_range,
    check_split_files,
    missing_files,
    missing_files_message,
    raw_folder,
)
from emnist_lightning.data.labels import SplitInfo, split_info, to_upright
from emnist_lightning.data.sampling import EpochSeededBatchSampler, stratified_split
from emnist_lightning.errors import ConfigError, DataFilesError, user_errors_unwrapped

log = logging.getLogger(__name__)


def load_split(data_dir: str | Path, split: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one stage of a split through torchvision as upright uint8 images and class indices.

    Returns images of shape (N, 1, 28, 28) and int64 labels in 0..num_classes-1.
    """
    check_split_files(data_dir, split, train)
    check_label_range(data_dir, split, train)
    dataset = _torchvision_emnist(data_dir, split, train)
    images = to_upright(dataset.data).unsqueeze(1).contiguous()
    labels = dataset.targets.long() - split_info(split).label_offset
    return images, labels


def _torchvision_emnist(
    data_dir: str | Path, split: str, train: bool, transform: nn.Module | None = None
) -> EMNIST:
    try:
        return EMNIST(str(data_dir), split=split, train=train, download=False, transform=transform)
    except (RuntimeError, ValueError) as exc:
        raise DataFilesError(
            f"torchvision could not read EMNIST '{split}' in {raw_folder(data_dir)}: {exc}"
        ) from None


def test_split(data_cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The official test split a `data` config names (downloading it if allowed)."""
    with user_errors_unwrapped():
        datamodule: EMNISTDataModule = instantiate(data_cfg)
    datamodule.prepare_data()
    return datamodule.test_set()


class InMemoryBatches(Dataset):
    """A whole stage as one uint8 tensor; indexing by a list of positions returns a batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
        self.images = images
        self.labels = labels
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.indices[positions]
        return self.images[rows], self.labels[rows]


class InOrderBatches(SequentialSampler):
    """Index batches in a fixed order, typed as the SequentialSampler Lightning's
    `overfit_batches` insists on (it replaces any other sampler with one that yields single
    images, which an in-memory batch loader cannot take)."""

    def __init__(self, batches: EpochSeededBatchSampler) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class EMNISTDataModule(L.LightningDataModule):
    """EMNIST for training, validation (carved from train) and test (the official split).

    Loaders yield upright uint8 batches; `on_after_batch_transfer` turns them into floats in
    [0, 1] and augments training batches on the device they landed on. Normalisation is the
    model's job (it is stored in the checkpoint), so a checkpoint alone can predict.
    """

    def __init__(
        self,
        data_dir: str = "data",
        split: str = "balanced",
        download: bool = True,
        val_fraction: float = 0.1,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        augment: nn.Module | None = None,
        in_memory: bool = True,
        num_workers: int = 0,
        seed: int = 42,
        extra: list[str] | tuple[str, ...] = (),
        extra_repeat: int = 1,
    ) -> None:
        super().__init__()
        self.info: SplitInfo = split_info(split)
        self.data_dir = data_dir
        self.split = split
        self.download = download
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.augment = augment
        self.in_memory = in_memory
        self.num_workers = num_workers
        self.seed = seed
        # Folders of users' corrections (serve.py corrections_dir) added to the training
        # images only, each `extra_repeat` times per epoch: a few hundred drawings among a
        # hundred thousand EMNIST images would otherwise hardly count.
        self.extra = [str(folder) for folder in extra]
        self.extra_repeat = extra_repeat
        if self.extra and not in_memory:
            raise ConfigError(
                "data.extra needs data.in_memory=true (the corrections join the in-memory "
                "training images): drop data.in_memory=false"
            )
        self._extra: tuple[torch.Tensor, torch.Tensor] | None = None
        self._train: tuple[torch.Tensor, torch.Tensor] | None = None
        self._test: tuple[torch.Tensor, torch.Tensor] | None = None
        self.train_indices: torch.Tensor | None = None
        self.val_indices: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def characters(self) -> list[str]:
        return list(self.info.characters)

    def prepare_data(self) -> None:
        if not missing_files(self.data_dir, self.split):
            return
        if not self.download:
            raise DataFilesError(missing_files_message(self.data_dir, self.split))
        try:
            for train in (True, False):
                EMNIST(self.data_dir, split=self.split, train=train, download=True)
        except Exception as exc:  # network errors come in many types
            raise DataFilesError(
                f"downloading EMNIST into {raw_folder(self.data_dir)} failed ({exc}); "
                "check the network or copy the extracted IDX files there and set data.download=false"
            ) from None

    def check_files(self, test: bool = True) -> None:
        """Check every file a run will read (headers, sizes, label ranges) before it trains,
        so a damaged test file is not found only after training. Files still to be
        downloaded are checked by torchvision's checksums instead."""
        if missing_files(self.data_dir, self.split):
            if not self.download:
                raise DataFilesError(missing_files_message(self.data_dir, self.split))
            return
        for train in (True, False) if test else (True,):
            check_split_files(self.data_dir, self.split, train)
            check_label_range(self.data_dir, self.split, train)
        self.extra_set()

    def extra_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The corrections of every `extra` folder (read and checked once): upright uint8
        images and class indices."""
        if self._extra is None:
            found = [
                c for folder in self.extra for c in read_corrections(folder, self.info.characters)
            ]
            images = (
                torch.stack([c.image for c in found])
                if found
                else torch.empty(0, 1, 28, 28, dtype=torch.uint8)
            )
            labels = torch.tensor(
                [self.info.characters.index(c.character) for c in found], dtype=torch.long
            )
            self._extra = (images, labels)
        return self._extra

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self._train is None:
            self._train = load_split(self.data_dir, self.split, train=True)
            self.train_indices, self.val_indices = stratified_split(
                self._train[1], self.val_fraction, self.seed
            )
            if len(self.val_indices) == 0 or len(self.train_indices) == 0:
                empty = "validation" if len(self.val_indices) == 0 else "training"
                raise ConfigError(
                    f"data.val_fraction={self.val_fraction} leaves no {empty} images "
                    f"({len(self._train[1]):,} in the training split): choose a fraction that "
                    "keeps at least one image of a class on each side, e.g. 0.1"
                )
            self._add_extra()
        if stage in (None, "test", "predict") and self._test is None:
            self._test = load_split(self.data_dir, self.split, train=False)

    def _add_extra(self) -> None:
        """Append the corrections to the training images, `extra_repeat` times each."""
        images, labels = self.extra_set()
        if not len(labels):
            return
        first = len(self._train[1])
        self._train = (torch.cat([self._train[0], images]), torch.cat([self._train[1], labels]))
        added = torch.arange(first, first + len(labels)).repeat(self.extra_repeat)
        self.train_indices = torch.cat([self.train_indices, added])
        log.info(
            "Training on %d corrections from %s (%d times each) beside EMNIST",
            len(labels),
            ", ".join(self.extra),
            self.extra_repeat,
        )

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole official test split: upright uint8 images and class indices, in loader
        order (loads it on first use)."""
        self.setup("test")
        return self._test

    def val_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation images (carved from the training split) and their class indices,
        upright uint8, in loader order (loads the training split on first use)."""
        self.setup("fit")
        images, labels = self._train
        return images[self.val_indices], labels[self.val_indices]

    def test_labels(self) -> torch.Tensor:
        """Class indices of the whole official test split, in loader order."""
        return self.test_set()[1]

    def train_class_counts(self) -> torch.Tensor:
        """How many training images (validation excluded) each class has."""
        labels = self._train[1][self.train_indices]
        return torch.bincount(labels, minlength=self.num_classes)

    # -- loaders ---------------------------------------------------------------------------
    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(
        self, train_split: bool, indices: torch.Tensor, training: bool, batch_size: int
    ) -> DataLoader:
        """Batches of `indices` for this rank: shuffled and padded to equal shards when
        training, in order and each image once when evaluating."""
        rank, world_size = self._rank_and_world()
        overfit = self.trainer is not None and self.trainer.overfit_batches > 0
        sampler = EpochSeededBatchSampler(
            len(indices),
            batch_size,
            shuffle=training and not overfit,  # overfitting: the same batches every epoch
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            pad=training,
        )
        if self.in_memory:
            images, labels = self._train if train_split else self._test
            dataset = InMemoryBatches(images, labels, indices)
            return DataLoader(
                dataset,
                batch_size=None,
                sampler=InOrderBatches(sampler) if overfit else sampler,
                num_workers=self.num_workers,
            )
        per_sample = _torchvision_emnist(
            self.data_dir,
            self.split,
            train_split,
            transform=v2.Compose([v2.PILToTensor(), v2.Lambda(to_upright)]),
        )
        offset = self.info.label_offset
        per_sample.target_transform = (lambda y: y - offset) if offset else None
        return DataLoader(
            Subset(per_sample, indices.tolist()),
            batch_sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(True, self.train_indices, training=True, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(True, self.val_indices, training=False, batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        all_test = torch.arange(len(self._test[1]))
        return self._loader(False, all_test, training=False, batch_size=self.eval_batch_size)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        images = images.float().div_(255)
        trainer = self.trainer
        if self.augment is not None and trainer is not None and trainer.training:
            images = self.augment(images)
        return images, labels
