"""train(cfg): build everything from the config, fit, test, export, and return the metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from .checkpoints import check_compatible, export_state_dict, read_checkpoint, resolve_ckpt_path
from .data import EMNISTDataModule
from .module import CharacterClassifier
from .precision import resolve_precision
from .report import write_report
from .validation import validate_config

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
REPORT_DIR = "report"
# The seed script's four figures, in its order, then the extra macro recall.
REPORTED = ("test/loss", "test/acc", "test/f1", "test/precision", "test/recall")


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    """Build every `_target_` entry of a config group (callbacks, loggers); skip nulls."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]


def _checkpoint_callback(callbacks: list[Callback]) -> ModelCheckpoint | None:
    return next((cb for cb in callbacks if isinstance(cb, ModelCheckpoint)), None)


def format_metrics_table(metrics: dict[str, float]) -> str:
    """A small aligned table of the figures a run reports."""
    rows = [(name, metrics[name]) for name in ("val/acc_best", *REPORTED) if name in metrics]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  ------"]
    lines += [f"{name.ljust(width)}  {value:.4f}" for name, value in rows]
    return "\n".join(lines)


def _metrics_csv(trainer: L.Trainer) -> Path | None:
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            return Path(logger.log_dir) / "metrics.csv"
    return None


def _write_test_report(
    trainer: L.Trainer, model: CharacterClassifier, datamodule: EMNISTDataModule, out_dir: Path
) -> None:
    """Confusion matrix, per-class scores, top confusions and learning curves for the test set."""
    probabilities = torch.cat(trainer.predict(model, datamodule=datamodule))
    pairs = write_report(
        probabilities.argmax(dim=1),
        datamodule.test_labels(),
        model.class_names,
        out_dir,
        _metrics_csv(trainer),
    )
    shown = ", ".join(f"{true}->{pred} ({count})" for true, pred, count in pairs)
    log.info("Most confused (true->predicted, test images): %s", shown)


def build_trainer(
    trainer_cfg: DictConfig, callbacks: list[Callback], loggers: list[Any]
) -> L.Trainer:
    """The configured Trainer, with `precision: auto` resolved for this machine."""
    precision = resolve_precision(
        trainer_cfg.get("precision"), str(trainer_cfg.get("accelerator", "auto"))
    )
    return instantiate(
        trainer_cfg, callbacks=callbacks, logger=loggers or False, precision=precision
    )


def train(cfg: DictConfig, extra_callbacks: list[Callback] | None = None) -> dict[str, float]:
    """Train (or resume) the configured model; test the best checkpoint; return the metrics.

    `extra_callbacks` lets a caller such as the tuner add callbacks (e.g. Optuna pruning)
    without a config of their own.
    """
    OmegaConf.resolve(cfg)
    validate_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)

    datamodule: EMNISTDataModule = instantiate(cfg.data)
    model: CharacterClassifier = instantiate(
        cfg.model,
        num_classes=datamodule.num_classes,
        class_names=datamodule.characters,
        input_mean=datamodule.mean,
        input_std=datamodule.std,
    )
    if model.hparams.logit_adjust_tau:
        datamodule.prepare_data()
        datamodule.setup("fit")
        model.set_class_counts(datamodule.train_class_counts())
    callbacks: list[Callback] = _instantiate_all(cfg.get("callbacks")) + list(extra_callbacks or [])
    loggers = _instantiate_all(cfg.get("logger"))
    if not loggers:  # logger=none: nothing for a learning-rate monitor to log to
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]

    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.runs_dir)
    checkpointing = _checkpoint_callback(callbacks)
    if ckpt_path is not None:
        check_compatible(read_checkpoint(ckpt_path), ckpt_path, datamodule.characters)
        log.info("Resuming from %s", ckpt_path)
        if checkpointing is not None:
            # Keep writing where the run started, so its best-k tracking carries on.
            checkpointing.dirpath = str(ckpt_path.parent)

    trainer = build_trainer(cfg.trainer, callbacks, loggers)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config_resolved.yaml")

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)

    metrics: dict[str, float] = {"val/acc_best": float(model.best_val_acc)}
    best_path = checkpointing.best_model_path if checkpointing is not None else ""
    if cfg.get("test"):
        results = trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None)
        metrics.update({k: float(v) for k, v in results[0].items()})
        if trainer.world_size == 1:
            _write_test_report(trainer, model, datamodule, output_dir / REPORT_DIR)
    elif best_path:
        model.load_state_dict(read_checkpoint(best_path)["state_dict"])

    metrics["epochs"] = float(trainer.current_epoch)
    metrics["global_step"] = float(trainer.global_step)
    if trainer.is_global_zero:
        export_state_dict(model, output_dir)
        (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
        log.info("Best checkpoint: %s", best_path or "(checkpointing disabled)")
        log.info("Results (%s):\n%s", output_dir, format_metrics_table(metrics))
    return metrics
