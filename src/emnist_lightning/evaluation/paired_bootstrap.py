"""How far apart two models' balanced accuracies really are on one evaluation set.

Recipes are chosen on the validation split, which follows the imbalanced training data: its
rarest classes hold a handful of images, so a few tenths of a point of balanced accuracy can
be one image. A paired bootstrap resamples the images (the same draw for both models, so what
they share cancels) and reports the difference with a 95% interval: a choice whose interval
straddles 0 is not one the split can make.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Difference:
    """second minus first, in points of balanced accuracy (mean recall over classes)."""

    observed: float
    low: float
    high: float


def balanced_accuracy(correct: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Mean per-class recall over the classes present, in points."""
    return float(_balanced(correct[None], labels[None], num_classes)[0])


def _balanced(correct: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Balanced accuracy of each row of (resamples, images) hits and labels, in points."""
    rows = torch.arange(len(labels)).unsqueeze(1) * num_classes
    flat = (labels + rows).flatten()
    size = len(labels) * num_classes
    support = torch.bincount(flat, minlength=size).view(-1, num_classes).double()
    hits = torch.bincount(flat, weights=correct.flatten().double(), minlength=size)
    recall = hits.view(-1, num_classes) / support.clamp_min(1)
    present = support > 0
    return 100 * (recall * present).sum(1) / present.sum(1)


def paired_difference(
    first: torch.Tensor,
    second: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    resamples: int = 1000,
    seed: int = 0,
    chunk: int = 100,
) -> Difference:
    """Balanced accuracy of `second`'s predictions minus `first`'s, with the 2.5th and 97.5th
    percentiles of the difference over `resamples` paired resamples of the images."""
    if not len(first) == len(second) == len(labels) > 0:
        raise ValueError("two predictions and the labels, one per image, are needed")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    first_hits, second_hits = (first == labels), (second == labels)
    observed = balanced_accuracy(second_hits, labels, num_classes) - balanced_accuracy(
        first_hits, labels, num_classes
    )
    generator = torch.Generator().manual_seed(seed)
    differences = []
    for start in range(0, resamples, chunk):
        draws = torch.randint(
            0, len(labels), (min(chunk, resamples - start), len(labels)), generator=generator
        )
        picked = labels[draws]
        differences.append(
            _balanced(second_hits[draws], picked, num_classes)
            - _balanced(first_hits[draws], picked, num_classes)
        )
    spread = torch.cat(differences)
    low, high = torch.quantile(spread, torch.tensor([0.025, 0.975], dtype=spread.dtype)).tolist()
    return Difference(observed, low, high)
