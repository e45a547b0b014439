"""Mixing pairs of training images into one (mixup, CutMix): a regulariser that trains the
net on blends of two characters, scored against both labels in proportion.

Each mixer pairs every image of a batch with another of the same batch (a random
permutation) and returns the blended images with the share of the first label; the
classifier's loss is then `share * loss(first) + (1 - share) * loss(partner)`. Draws come
from torch's global generator, so a resumed run mixes as a straight run would
(`models/random_states.py`). Chosen with `model/mixing=mixup` or `model/mixing=cutmix`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MixedBatch:
    """Blended images, each image's own label and its partner's, and the own label's share."""

    images: torch.Tensor
    labels: torch.Tensor
    partner_labels: torch.Tensor
    share: float


def _draw_share(alpha: float) -> float:
    """A share in [0, 1] from Beta(alpha, alpha), drawn from torch's global generator."""
    concentration = torch.tensor([alpha, alpha], dtype=torch.float64)
    return float(torch.distributions.Dirichlet(concentration).sample()[0])


def _partners(labels: torch.Tensor) -> torch.Tensor:
    return torch.randperm(len(labels)).to(labels.device)


class Mixup:
    """Zhang et al. (2018): each image becomes share x itself + (1 - share) x its partner."""

    def __init__(self, alpha: float = 0.2) -> None:
        if not alpha > 0:
            raise ValueError(f"mixup alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> MixedBatch:
        share = _draw_share(self.alpha)
        order = _partners(labels)
        mixed = images.mul(share).add_(images[order], alpha=1.0 - share)
        return MixedBatch(mixed, labels, labels[order], share)


class CutMix:
    """Yun et al. (2019): a box of each image is replaced by the same box of its partner;
    the own label's share is the part of the image left uncovered."""

    def __init__(self, alpha: float = 1.0) -> None:
        if not alpha > 0:
            raise ValueError(f"cutmix alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> MixedBatch:
        height, width = images.shape[-2:]
        cut = (1.0 - _draw_share(self.alpha)) ** 0.5  # the box's side, as a fraction
        box_h, box_w = round(height * cut), round(width * cut)
        top = int(torch.randint(0, height - box_h + 1, ()))
        left = int(torch.randint(0, width - box_w + 1, ()))
        order = _partners(labels)
        mixed = images.clone()
        rows, cols = slice(top, top + box_h), slice(left, left + box_w)
        mixed[..., rows, cols] = images[order][..., rows, cols]
        share = 1.0 - (box_h * box_w) / (height * width)
        return MixedBatch(mixed, labels, labels[order], share)
