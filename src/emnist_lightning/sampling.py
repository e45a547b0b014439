"""Index-level sampling shared by both data paths: stratified splits and epoch-seeded batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def stratified_split(
    labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (train, val) with each class's share of val equal to `val_fraction`.

    Seeded, so the same data and seed always give the same split and the official test set
    never has to be touched to get validation data.
    """
    generator = torch.Generator().manual_seed(seed)
    train_parts, val_parts = [], []
    for cls in torch.unique(labels):
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        num_val = int(round(val_fraction * len(members)))
        val_parts.append(members[:num_val])
        train_parts.append(members[num_val:])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


class EpochSeededBatchSampler(Sampler[list[int]]):
    """Yields batches of positions 0..n-1, reshuffled per epoch from `seed + epoch`.

    The order depends only on the seed and the epoch number (Lightning calls `set_epoch`),
    so a run resumed from a checkpoint sees exactly the batches a straight run would.
    Under multi-device training each rank takes every `world_size`-th position.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _positions(self) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        yield from (chunk.tolist() for chunk in self._positions().split(self.batch_size))

    def __len__(self) -> int:
        per_rank = len(range(self.rank, self.num_samples, self.world_size))
        return -(-per_rank // self.batch_size)
