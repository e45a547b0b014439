"""Evaluation report: confusion matrix, per-class scores, most-confused pairs, learning curves."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import matplotlib
import torch
import yaml
from matplotlib.figure import Figure
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from emnist_lightning.models.classifier import training_loss_name
from emnist_lightning.plot_axes import integer_x_axis

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
REPORT_DIR = "report"
# The seed script's four figures, in its order, then the extra macro recall.
REPORTED = ("test/loss", "test/acc", "test/f1", "test/precision", "test/recall")
CONFUSION_PNG = "confusion_matrix.png"
CONFUSION_CSV = "confusion_matrix.csv"
PER_CLASS_CSV = "per_class_metrics.csv"
CONFUSED_PAIRS_CSV = "most_confused_pairs.csv"
LEARNING_CURVES_PNG = "learning_curves.png"


def format_metrics_table(metrics: dict[str, float]) -> str:
    """A small aligned table of the figures a run reports."""
    rows = [(name, metrics[name]) for name in ("val/acc_best", *REPORTED) if name in metrics]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    lines += [f"{name.ljust(width)}  {value:.4f}" for name, value in rows]
    return "\n".join(lines)


def most_confused_pairs(
    confusion: torch.Tensor, class_names: list[str], top: int = 10
) -> list[tuple[str, str, int]]:
    """(true, predicted, count) for the largest off-diagonal cells of a count matrix."""
    off_diagonal = confusion.clone()
    off_diagonal.fill_diagonal_(0)
    counts, flat = off_diagonal.flatten().topk(min(top, off_diagonal.numel()))
    n = confusion.shape[0]
    return [
        (class_names[int(i) // n], class_names[int(i) % n], int(c))
        for c, i in zip(counts, flat, strict=True)
        if c > 0
    ]


def row_rates(confusion: torch.Tensor) -> torch.Tensor:
    """Each row of a count matrix as shares of its true class (rows with no images stay 0)."""
    return confusion.float() / confusion.sum(dim=1, keepdim=True).clamp_min(1)


def plot_confusion(confusion: torch.Tensor, class_names: list[str], path: Path) -> None:
    """Row-normalised confusion matrix (each row: where one true class went)."""
    rates = row_rates(confusion)
    size = max(6.0, 0.22 * len(class_names))
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, fontsize=7)
    axes.set_yticks(ticks, class_names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (rows normalised)")
    figure.colorbar(image, fraction=0.046, pad=0.04)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _epoch_series(metrics_csv: Path) -> dict[str, dict[int, float]]:
    """Per-epoch values of the training loss, validation loss and accuracy in a CSVLogger file."""
    with metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        if not row.get("epoch"):
            continue
        for key in ("train/loss_epoch", "train/loss", "val/loss", "val/acc"):
            if row.get(key):
                # train/loss is the epoch mean itself when it is not logged per step
                name = "train/loss_epoch" if key == "train/loss" else key
                series.setdefault(name, {})[int(row["epoch"])] = float(row[key])
    return series


def _training_loss_label(metrics_csv: Path) -> str:
    """The training curve's name, from the run's hyperparameters (hparams.yaml beside the CSV,
    read as plain YAML); "training loss" alone when they are not there."""
    try:
        hparams = yaml.safe_load((metrics_csv.parent / "hparams.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return "training loss"
    if not isinstance(hparams, dict):
        return "training loss"
    return f"training loss: {training_loss_name(hparams)}"


def learning_curves_figure(metrics_csv: Path) -> Figure | None:
    """Loss and accuracy per epoch (whole-epoch ticks); None when the file has no epochs yet."""
    series = _epoch_series(metrics_csv)
    if not series:
        return None
    figure = Figure(figsize=(10, 4.8), layout="constrained")
    loss_axes, acc_axes = figure.subplots(1, 2)
    curves = (
        ("train/loss_epoch", f"{_training_loss_label(metrics_csv)}\n(mean over the epoch)"),
        ("val/loss", "validation loss: cross-entropy\n(end of epoch)"),
    )
    epochs_seen: list[int] = []
    for key, label in curves:
        if key in series:
            epochs = sorted(series[key])
            epochs_seen += [e + 1 for e in epochs]
            loss_axes.plot(
                [e + 1 for e in epochs], [series[key][e] for e in epochs], marker="o", label=label
            )
    if "val/acc" in series:
        epochs = sorted(series["val/acc"])
        epochs_seen += [e + 1 for e in epochs]
        acc_axes.plot(
            [e + 1 for e in epochs], [100 * series["val/acc"][e] for e in epochs], marker="o"
        )
    loss_axes.set(xlabel="epoch", ylabel="loss", title="Loss")
    # Below the axes: the curves start top left and fall, wherever a legend inside would be.
    loss_axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    acc_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="Validation accuracy")
    for axes in (loss_axes, acc_axes):
        integer_x_axis(axes, sorted(set(epochs_seen)))
        axes.grid(True, alpha=0.3)
    return figure


def plot_learning_curves(metrics_csv: Path, path: Path) -> bool:
    """Write learning_curves.png from a CSVLogger file; False when it has no epochs yet."""
    figure = learning_curves_figure(metrics_csv)
    if figure is None:
        return False
    figure.savefig(path, dpi=120)
    return True


def write_report(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    class_names: list[str],
    out_dir: str | Path,
    metrics_csv: Path | None = None,
) -> list[tuple[str, str, int]]:
    """Write every report file for predicted vs true class indices; returns the top confusions."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(class_names)
    confusion = multiclass_confusion_matrix(predictions, targets, n)
    with (out_dir / CONFUSION_CSV).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *class_names])
        writer.writerows(
            [name, *row] for name, row in zip(class_names, confusion.tolist(), strict=True)
        )
    plot_confusion(confusion, class_names, out_dir / CONFUSION_PNG)

    scores = {
        "precision": multiclass_precision(predictions, targets, n, average=None),
        "recall": multiclass_recall(predictions, targets, n, average=None),
        "f1": multiclass_f1_score(predictions, targets, n, average=None),
    }
    support = torch.bincount(targets, minlength=n)
    with (out_dir / PER_CLASS_CSV).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "character", "precision", "recall", "f1", "support"])
        for i, name in enumerate(class_names):
            writer.writerow(
                [i, name, *(f"{float(scores[k][i]):.4f}" for k in scores), int(support[i])]
            )

    pairs = most_confused_pairs(confusion, class_names)
    with (out_dir / CONFUSED_PAIRS_CSV).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true", "predicted", "count"])
        writer.writerows(pairs)
    if metrics_csv is not None and metrics_csv.is_file():
        plot_learning_curves(metrics_csv, out_dir / LEARNING_CURVES_PNG)
    return pairs
