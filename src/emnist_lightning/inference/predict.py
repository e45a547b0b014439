"""predict(cfg): a trained model on users' image files and on random test images."""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig

from emnist_lightning.config_checks import validate_config
from emnist_lightning.data.datamodule import test_split
from emnist_lightning.data.labels import check_split_matches
from emnist_lightning.errors import UserError
from emnist_lightning.inference.predictors import (
    Predictor,
    load_predictor,
    top_k,
    view_probabilities,
)
from emnist_lightning.inference.preprocess import (
    IMAGE_SUFFIXES,
    expand_image_paths,
    load_views,
)
from emnist_lightning.inference.which_model import announce_model

log = logging.getLogger(__name__)

PREDICTIONS_CSV = "predictions.csv"
RANDOM_TEST_PNG = "random_test.png"
RANDOM_TEST_CSV = "random_test.csv"


def predict_files(
    predictor: Predictor, entries: list[str], k: int, out_csv: Path
) -> dict[str, int]:
    """Predict every readable image; one error line per unusable file. Writes a CSV of both."""
    paths = expand_image_paths(entries)
    if not paths:
        raise UserError(
            f"no image files in {', '.join(entries)}: pass image files ("
            f"{', '.join(sorted(IMAGE_SUFFIXES))}) or folders holding them"
        )
    rows: list[dict[str, Any]] = []
    images, kept = [], []
    for path in paths:
        try:
            images.append(load_views(path))
            kept.append(path)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            rows.append({"file": str(path), "error": str(exc)})
    if images:
        ranked = top_k(view_probabilities(predictor, images), predictor.class_names, k)
        for path, best in zip(kept, ranked, strict=True):
            others = ", ".join(f"{c} {p:.1%}" for c, p in best)
            print(f"{path}: '{best[0][0]}' {best[0][1]:.1%}  (top-{len(best)}: {others})")
            row: dict[str, Any] = {
                "file": str(path),
                "prediction": best[0][0],
                "probability": f"{best[0][1]:.4f}",
            }
            for rank, (char, prob) in enumerate(best, start=1):
                row[f"top{rank}"] = char
                row[f"top{rank}_probability"] = f"{prob:.4f}"
            rows.append(row)
    columns = ["file", "prediction", "probability"]
    columns += [f"top{r}{s}" for r in range(1, k + 1) for s in ("", "_probability")] + ["error"]
    with out_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["file"]))
    return {"predicted": len(kept), "failed": len(paths) - len(kept)}


def grid_figure(images: torch.Tensor, predicted: list[str], actual: list[str]) -> Figure:
    """Upright images titled "pred / true", mistakes in red; each title sits in its own row
    band (constrained layout), never over the image above it."""
    n = len(images)
    cols = min(n, 8)
    rows = -(-n // cols)
    figure = Figure(figsize=(1.5 * cols, 1.75 * rows + 0.5), layout="constrained")
    axes_grid = figure.subplots(rows, cols, squeeze=False)
    for axes in axes_grid.flat:
        axes.axis("off")
    for axes, image, pred, true in zip(axes_grid.flat, images, predicted, actual, strict=False):
        axes.imshow(image.squeeze(0).numpy(), cmap="gray", vmin=0, vmax=1)
        wrong = pred != true
        axes.set_title(
            f"{pred} / {true}" + (" x" if wrong else ""),
            color="red" if wrong else "black",
            fontsize=10,
        )
    figure.suptitle("pred / true (red: mistake)", fontsize=10)
    return figure


def plot_grid(images: torch.Tensor, predicted: list[str], actual: list[str], path: Path) -> None:
    grid_figure(images, predicted, actual).savefig(path, dpi=120)


def predict_random_test(predictor: Predictor, cfg: DictConfig, out_dir: Path) -> dict[str, int]:
    """The seed's predict_images(), done properly: seeded sample, printed, saved as a grid."""
    check_split_matches(predictor.class_names, cfg.data.split)
    images, labels = test_split(cfg.data)
    generator = torch.Generator().manual_seed(cfg.seed)
    chosen = torch.randperm(len(labels), generator=generator)[: cfg.random_test]
    batch = images[chosen].float().div(255)
    predicted_idx = predictor.probabilities(batch).argmax(dim=1)
    predicted = [predictor.class_names[int(i)] for i in predicted_idx]
    actual = [predictor.class_names[int(i)] for i in labels[chosen]]
    with (out_dir / RANDOM_TEST_CSV).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["test_index", "predicted", "actual", "correct"])
        for index, pred, true in zip(chosen.tolist(), predicted, actual, strict=True):
            writer.writerow([index, pred, true, pred == true])
            print(
                f"test image {index:>6}: predicted '{pred}', actual '{true}'{'' if pred == true else '  <- wrong'}"
            )
    correct = sum(p == t for p, t in zip(predicted, actual, strict=True))
    print(f"{correct}/{len(actual)} correct")
    plot_grid(batch, predicted, actual, out_dir / RANDOM_TEST_PNG)
    return {"random_correct": correct, "random_total": len(actual)}


def predict(cfg: DictConfig) -> dict[str, int]:
    """Load the model once, then run whichever of `images` and `random_test` are asked for."""
    validate_config(cfg)
    if not cfg.images and not cfg.random_test:
        raise UserError(
            "nothing to predict: pass images=<file or folder>[,...] and/or random_test=N"
        )
    predictor = load_predictor(announce_model(str(cfg.ckpt_path), cfg.train_runs_dir))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, int] = {"predicted": 0, "failed": 0}
    if cfg.images:
        entries = [cfg.images] if isinstance(cfg.images, str) else list(cfg.images)
        summary.update(predict_files(predictor, entries, cfg.top_k, out_dir / PREDICTIONS_CSV))
    if cfg.random_test:
        summary.update(predict_random_test(predictor, cfg, out_dir))
    log.info("Outputs in %s", out_dir)
    return summary
