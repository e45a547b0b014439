"""The paired bootstrap that says whether the validation split can tell two models apart."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.classification import multiclass_recall

from emnist_lightning.evaluation.paired_bootstrap import balanced_accuracy, paired_difference


def _labels(per_class: list[int]) -> torch.Tensor:
    return torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])


def test_balanced_accuracy_is_torchmetrics_macro_recall() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = _labels([5, 40, 200, 17])
    predicted = torch.where(torch.rand(len(labels), generator=generator) < 0.7, labels, 0)
    expected = 100 * float(multiclass_recall(predicted, labels, 4, average="macro"))
    assert balanced_accuracy(predicted == labels, labels, 4) == pytest.approx(expected)


def test_the_same_predictions_differ_by_exactly_nothing_in_every_resample() -> None:
    labels = _labels([3, 50, 50])
    predicted = labels.roll(7)  # right and wrong in places
    difference = paired_difference(predicted, predicted.clone(), labels, 3, resamples=200)
    assert (difference.observed, difference.low, difference.high) == (0, 0, 0)


def test_many_images_decide_and_one_image_of_a_rare_class_does_not() -> None:
    wide = _labels([200] * 10)
    first = torch.where(torch.arange(len(wide)) % 5 == 0, (wide + 1) % 10, wide)  # 80% right
    second = torch.where(torch.arange(len(wide)) % 10 == 0, (wide + 1) % 10, wide)  # 90%
    decided = paired_difference(first, second, wide, 10)
    assert decided.observed == pytest.approx(10) and 0 < decided.low < 10 < decided.high

    rare = _labels([4, 400, 400])
    first = torch.where(torch.arange(len(rare)) < 2, 1, rare)  # the rare class: 2 of 4 right
    second = torch.where(torch.arange(len(rare)) < 1, 1, rare)  # 3 of 4
    undecided = paired_difference(first, second, rare, 3)
    assert undecided.observed == pytest.approx(25 / 3)
    assert undecided.low <= 0 < undecided.observed < undecided.high


def test_predictions_of_other_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one per image"):
        paired_difference(torch.zeros(3), torch.zeros(4), torch.zeros(3), 2)
