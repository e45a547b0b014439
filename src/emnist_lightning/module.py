"""The LightningModule: normalisation, loss, metrics, optimizer and schedule around a net."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def plain(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A resolved plain-dict copy of a config node, so checkpoints hold no OmegaConf objects."""
    if config is None:
        return None
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return dict(config)


def _metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
        },
        prefix=prefix,
    )


class CharacterClassifier(L.LightningModule):
    """Classifies upright [0, 1] character images; everything inference needs is in hparams.

    `net`, `optimizer` and `scheduler` are configs with `_target_` (the optimizer and
    scheduler `_partial_`), kept as plain dicts: checkpoints then load with
    `weights_only=True` and rebuild the same net without any training config.
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        lr: float = 1e-3,
        scheduler: Mapping[str, Any] | None = None,
        scheduler_interval: str = "epoch",
        label_smoothing: float = 0.0,
        logit_adjust_tau: float = 0.0,
        channels_last: bool = False,
        num_classes: int = 47,
        class_names: list[str] | None = None,
        input_mean: float = 0.1736,
        input_std: float = 0.3317,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {
                "net": plain(net),
                "optimizer": plain(optimizer),
                "lr": float(lr),
                "scheduler": plain(scheduler),
                "scheduler_interval": scheduler_interval,
                "label_smoothing": float(label_smoothing),
                "logit_adjust_tau": float(logit_adjust_tau),
                "channels_last": bool(channels_last),
                "num_classes": int(num_classes),
                "class_names": list(class_names or [str(i) for i in range(num_classes)]),
                "input_mean": float(input_mean),
                "input_std": float(input_std),
            }
        )
        self.net = instantiate(self.hparams.net, num_classes=num_classes)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.val_metrics = _metrics(num_classes, "val/")
        self.test_metrics = _metrics(num_classes, "test/")
        # Persistent, so the best validation accuracy survives a resume from checkpoint.
        self.register_buffer("best_val_acc", torch.tensor(0.0))
        # log class frequencies of the training data, for the logit-adjusted loss.
        self.register_buffer("log_prior", torch.full((num_classes,), -math.log(num_classes)))

    def set_class_counts(self, counts: torch.Tensor) -> None:
        """Record training class frequencies; the loss then adds tau * log(prior) to the
        logits (Menon et al., 2021), so the plain logits fit a class-balanced test set."""
        prior = counts.float().clamp_min(1) / counts.sum()
        self.log_prior.copy_(prior.log())

    @property
    def class_names(self) -> list[str]:
        return self.hparams.class_names

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for upright images with values in [0, 1], shape (B, 1, 28, 28)."""
        images = (images - self.hparams.input_mean) / self.hparams.input_std
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.hparams.logit_adjust_tau:
            logits = logits + self.hparams.logit_adjust_tau * self.log_prior
        return F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = self._loss(logits, labels)
        self.log(
            "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels)
        )
        return loss

    def _evaluate(self, batch, metrics: MetricCollection, stage: str) -> None:
        images, labels = batch
        logits = self(images)
        # Unsmoothed loss, so validation/test losses compare across recipes.
        loss = F.cross_entropy(logits, labels)
        metrics.update(logits, labels)
        self.log(
            f"{stage}/loss",
            loss,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(labels),
            sync_dist=True,
        )
        self.log_dict(metrics, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        acc = self.trainer.callback_metrics.get("val/acc")
        if acc is not None:
            self.best_val_acc = torch.maximum(self.best_val_acc, acc.to(self.best_val_acc))
        self.log("val/acc_best", self.best_val_acc, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).softmax(dim=1)

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(self.parameters(), lr=self.hparams.lr)
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer, **self._schedule_lengths())
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval},
        }

    def _schedule_lengths(self) -> dict[str, Any]:
        """Fill in the lengths a scheduler needs from the trainer (OneCycleLR's total_steps
        and max_lr, cosine's T_max), unless the config sets them."""
        config = self.hparams.scheduler
        accepted = inspect.signature(get_class(config["_target_"])).parameters
        per_step = self.hparams.scheduler_interval == "step"
        candidates = {
            "total_steps": self.trainer.estimated_stepping_batches,
            "max_lr": self.hparams.lr,
            "T_max": self.trainer.estimated_stepping_batches
            if per_step
            else self.trainer.max_epochs,
        }
        return {k: v for k, v in candidates.items() if k in accepted and config.get(k) is None}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A human-readable summary of what inference needs (also in hyper_parameters).
        checkpoint["inference"] = {
            "class_names": self.class_names,
            "input_mean": self.hparams.input_mean,
            "input_std": self.hparams.input_std,
            "image_size": 28,
            "orientation": "upright (EMNIST's stored images transposed once)",
            "foreground": "light on dark",
        }
