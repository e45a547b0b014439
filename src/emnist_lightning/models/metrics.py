"""The classification scores this project reports: one definition for training's validation
and test passes and for `evaluate.py`, so the two can never disagree on what `test/f1` is."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Accuracy over images, and F1, precision and recall averaged over classes (`macro`:
    every class counts alike, as in EMNIST's balanced test split). Updates take class scores
    (B, C) or predicted classes (B,) with the true classes."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
        },
        prefix=prefix,
    )
