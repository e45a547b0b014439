"""Index-level sampling shared by both data paths: stratified splits and epoch-seeded batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from emnist_lightning.errors import ConfigError


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

    Under multi-process training each rank takes every `world_size`-th position, and every
    rank yields the same number of batches (DDP waits forever for a rank that stopped
    early). Training shards (`pad=True`) are topped up by repeating the epoch's first
    positions, as torch's DistributedSampler does, and never end in a one-image batch (batch
    norm cannot train on one image). Evaluation shards (`pad=False`) count
    every image exactly once: a rank with one image fewer spreads its images over the same
    number of batches, each one at most `batch_size`. With one process both give today's
    plain batches of `batch_size`.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = False,
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch = 0
        if not pad and num_samples // world_size < len(self):
            raise ConfigError(
                f"{num_samples:,} evaluation images cannot give {world_size} processes the "
                f"same number of batches of at most {batch_size}: use data.eval_batch_size "
                ">= 2 and no more processes than images"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _positions(self) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        short = -self.num_samples % self.world_size
        if self.pad and short and self.num_samples:
            order = torch.cat([order, order.repeat(-(-short // self.num_samples))[:short]])
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        positions = self._positions()
        if not len(positions):
            return
        if self.pad or self.world_size == 1:
            batches = list(positions.split(self.batch_size))
            if self.pad and len(batches) > 1 and len(batches[-1]) == 1:
                # A one-image training batch breaks batch norm: it joins the batch before.
                batches[-2:] = [torch.cat(batches[-2:])]
        else:
            batches = positions.tensor_split(len(self))
        yield from (batch.tolist() for batch in batches)

    def __len__(self) -> int:
        """The same on every rank: batches of the largest shard."""
        largest_shard = -(-self.num_samples // self.world_size)
        batches = -(-largest_shard // self.batch_size)
        if self.pad and batches > 1 and largest_shard % self.batch_size == 1:
            batches -= 1  # the lone last image joined the batch before
        return batches


def unshard(shards: Sequence[torch.Tensor]) -> torch.Tensor:
    """Put per-rank results of an unshuffled evaluation back in loader order (rank r held
    positions r, r + world_size, ...), so each image is counted once."""
    world_size = len(shards)
    total = sum(len(shard) for shard in shards)
    for rank, shard in enumerate(shards):
        if len(shard) != len(range(rank, total, world_size)):
            raise ValueError(f"shard sizes {[len(s) for s in shards]} are not an even split")
    merged = shards[0].new_empty((total, *shards[0].shape[1:]))
    for rank, shard in enumerate(shards):
        merged[rank::world_size] = shard
    return merged
