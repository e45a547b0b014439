"""evaluate(cfg): test figures and the full report for any model file, on demand."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from emnist_lightning.config_checks import validate_config
from emnist_lightning.data.datamodule import test_split
from emnist_lightning.data.labels import check_split_matches
from emnist_lightning.evaluation.report import METRICS_FILE, format_metrics_table, write_report
from emnist_lightning.inference.predictors import load_predictor
from emnist_lightning.inference.which_model import announce_model
from emnist_lightning.models.metrics import classification_metrics

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score a model on the official test split and write the evaluation report."""
    validate_config(cfg)
    model_path = announce_model(str(cfg.ckpt_path), cfg.train_runs_dir)
    predictor = load_predictor(model_path)
    check_split_matches(predictor.class_names, cfg.data.split)
    images, labels = test_split(cfg.data)
    predictions = torch.cat(
        [
            predictor.probabilities(chunk.float().div(255)).argmax(dim=1)
            for chunk in images.split(cfg.data.eval_batch_size)
        ]
    )
    scores = classification_metrics(len(predictor.class_names), "test/")
    metrics = {name: float(value) for name, value in scores(predictions, labels).items()}
    out_dir = Path(cfg.paths.output_dir)
    # A checkpoint in <run>/checkpoints/ has its run's CSV log two folders up.
    metrics_csv = model_path.parent.parent / "csv" / "metrics.csv"
    pairs = write_report(predictions, labels, predictor.class_names, out_dir, metrics_csv)
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    log.info("Test figures of %s:\n%s", model_path.name, format_metrics_table(metrics))
    log.info(
        "Most confused (true->predicted): %s", ", ".join(f"{t}->{p} ({c})" for t, p, c in pairs)
    )
    log.info("Report in %s", out_dir)
    return metrics
