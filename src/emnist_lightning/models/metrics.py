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

# MetricCollection keys, logged as val/<name> and test/<name>.
SCORES = ("acc", "f1", "precision", "recall")
# Logged while fitting, per validation (val/acc_best: the best val/acc so far) or per training
# epoch: what a checkpoint or early-stopping callback, or the tuner's pruner, may monitor.
# What a checkpoint callback can monitor: the logged scores, and the epoch and step counters
# Lightning adds to every checkpoint's candidates (monitor=epoch: every epoch is a new best).
MONITORABLE = (
    *(f"val/{name}" for name in SCORES),
    "val/loss",
    "val/acc_best",
    "train/loss",
    "epoch",
    "step",
)


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Accuracy over images, and F1, precision and recall averaged over classes (`macro`:
    every class counts alike, as in EMNIST's balanced test split). Updates take class scores
    (B, C) or predicted classes (B,) with the true classes."""
    metrics = (
        MulticlassAccuracy(num_classes, average="micro"),
        MulticlassF1Score(num_classes, average="macro"),
        MulticlassPrecision(num_classes, average="macro"),
        MulticlassRecall(num_classes, average="macro"),
    )
    return MetricCollection(dict(zip(SCORES, metrics, strict=True)), prefix=prefix)
