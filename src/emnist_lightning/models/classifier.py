"""The LightningModule: loss, metrics, optimizer and schedule around a model card's net."""

from __future__ import annotations

import dataclasses
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
from torchmetrics.classification import MulticlassConfusionMatrix

from emnist_lightning.data.sampling import unshard
from emnist_lightning.errors import CheckpointError, ConfigError, ModelFileError
from emnist_lightning.models import random_states
from emnist_lightning.models.card import (
    CHECKPOINT_CARD_KEY,
    LEGACY_NET_PREFIX,
    MAX_TEST_TIME_SHIFT,
    NET_PREFIX,
    TEST_TIME_SHIFT,
    ModelCard,
)
from emnist_lightning.models.distillation import Distillation
from emnist_lightning.models.look_alikes import look_alike_pairs
from emnist_lightning.models.metrics import classification_metrics
from emnist_lightning.models.nets import check_net

RANDOM_STATES_KEY = "random_states"


def plain(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A resolved plain-dict copy of a config node, so checkpoints hold no OmegaConf objects."""
    if config is None:
        return None
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    return dict(config)


def card_from_config(
    net: Mapping[str, Any],
    class_names: list[str],
    input_mean: float,
    input_std: float,
    split: str | None,
    test_time_shift: int = 0,
) -> ModelCard:
    """The card of the model a training config describes (`model.net`: name + parameters)."""
    params = {k: v for k, v in net.items() if k != "name"}
    try:
        name, params = check_net(net.get("name"), params, "model.net")
    except ModelFileError as exc:
        raise ConfigError(str(exc)) from None
    if TEST_TIME_SHIFT(test_time_shift)[1] is not None:
        raise ConfigError(
            f"model.test_time_shift={test_time_shift!r}: use a whole number of pixels in "
            f"[0, {MAX_TEST_TIME_SHIFT}], e.g. 1 (0 turns test-time shifts off)"
        )
    return ModelCard(
        net=name,
        net_params=params,
        class_names=tuple(class_names),
        input_mean=float(input_mean),
        input_std=float(input_std),
        split=split,
        test_time_shift=test_time_shift,
    )


def training_loss_name(hparams: Mapping[str, Any]) -> str:
    """What `train/loss` is for a run with these hyperparameters (CharacterClassifier._loss):
    not the validation cross-entropy once logits are adjusted or labels smoothed."""
    tau, smoothing = hparams.get("logit_adjust_tau"), hparams.get("label_smoothing")
    parts = []
    if isinstance(tau, (int, float)) and tau:
        parts.append(f"logit-adjusted, tau {tau:g}")
    if isinstance(smoothing, (int, float)) and smoothing:
        parts.append(f"label smoothing {smoothing:g}")
    mixing = hparams.get("mixing")
    mixer = mixing.get("_target_") if isinstance(mixing, Mapping) else None
    if isinstance(mixer, str):  # a name to print, never imported
        parts.append(f"{mixer.rsplit('.', 1)[-1].lower()} blends")
    teacher = hparams.get("distillation")
    weight = teacher.get("weight") if isinstance(teacher, Mapping) else None
    if isinstance(weight, (int, float)) and weight:
        parts.append(f"distilled from a teacher, weight {weight:g}")
    return f"cross-entropy ({'; '.join(parts)})" if parts else "cross-entropy"


class CharacterClassifier(L.LightningModule):
    """Classifies upright [0, 1] character images with the net its model card names.

    `net` is plain data (a registry name and parameters); `optimizer` and `scheduler` are
    trusted configs from this run's Hydra config (`_partial_`), only instantiated when
    training starts. Checkpoints carry the model card, which is all inference reads.
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        input_mean: float,
        input_std: float,
        lr: float = 1e-3,
        scheduler: Mapping[str, Any] | None = None,
        scheduler_interval: str = "epoch",
        label_smoothing: float = 0.0,
        logit_adjust_tau: float = 0.0,
        channels_last: bool = False,
        num_classes: int = 47,
        class_names: list[str] | None = None,
        split: str | None = None,
        log_every_step: bool = True,
        test_time_shift: int = 0,
        mixing: Mapping[str, Any] | None = None,
        distillation: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.card = card_from_config(
            plain(net), class_names, input_mean, input_std, split, test_time_shift
        )
        self.save_hyperparameters(
            {
                "net": {"name": self.card.net, **self.card.net_params},
                "optimizer": plain(optimizer),
                "lr": float(lr),
                "scheduler": plain(scheduler),
                "scheduler_interval": scheduler_interval,
                "label_smoothing": float(label_smoothing),
                "logit_adjust_tau": float(logit_adjust_tau),
                "channels_last": bool(channels_last),
                "num_classes": self.card.num_classes,
                "class_names": class_names,
                "input_mean": self.card.input_mean,
                "input_std": self.card.input_std,
                "split": split,
                "log_every_step": bool(log_every_step),
                "test_time_shift": self.card.test_time_shift,
                "mixing": plain(mixing),
                "distillation": plain(distillation),
            }
        )
        # Trusted configs of this run (like the optimizer's), never read from a model file.
        self.mixer = instantiate(mixing) if mixing else None
        # Not a submodule: the teacher stays out of this model's state_dict and checkpoints.
        self.distiller: Distillation | None = (
            instantiate(distillation, channels_last=channels_last) if distillation else None
        )
        if self.distiller is not None:
            self.distiller.check_classes(class_names)
        self.model = self.card.build_model(channels_last=channels_last)
        num_classes = self.card.num_classes
        self.val_metrics = classification_metrics(num_classes, "val/")
        self.test_metrics = classification_metrics(num_classes, "test/")
        # Counts of the current validation pass: its mix-ups become the card's look-alikes.
        self.val_confusion = MulticlassConfusionMatrix(num_classes)
        # Persistent, so the best validation accuracy survives a resume from checkpoint.
        self.register_buffer("best_val_acc", torch.tensor(0.0))
        # log class frequencies of the training data, for the logit-adjusted loss.
        self.register_buffer("log_prior", torch.full((num_classes,), -math.log(num_classes)))
        # Predicted classes of the last test pass, in loader order (for the report).
        self.test_predictions: list[torch.Tensor] = []

    @property
    def class_names(self) -> list[str]:
        return list(self.card.class_names)

    def setup(self, stage: str) -> None:
        """Record the training data's class frequencies for the logit-adjusted loss."""
        datamodule = self.trainer.datamodule
        if stage == "fit" and self.hparams.logit_adjust_tau and datamodule is not None:
            self.set_class_counts(datamodule.train_class_counts())

    def set_class_counts(self, counts: torch.Tensor) -> None:
        """Training class frequencies; the loss then adds tau * log(prior) to the logits
        (Menon et al., 2021), so the plain logits fit a class-balanced test set."""
        prior = counts.float().clamp_min(1) / counts.sum()
        self.log_prior.copy_(prior.log())

    def on_fit_start(self) -> None:
        if self.distiller is not None:
            self.distiller.to(self.device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores for upright images with values in [0, 1], shape (B, 1, 28, 28): logits,
        or in eval mode with test-time shifts the views' mean log-probabilities."""
        return self.model(images)

    def _adjusted(self, logits: torch.Tensor) -> torch.Tensor:
        if self.hparams.logit_adjust_tau:
            return logits + self.hparams.logit_adjust_tau * self.log_prior
        return logits

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # training_loss_name() says in words what this computes: keep the two together.
        return F.cross_entropy(
            self._adjusted(logits), labels, label_smoothing=self.hparams.label_smoothing
        )

    def _distilled(
        self, loss: torch.Tensor, images: torch.Tensor, logits: torch.Tensor, copies: int
    ) -> torch.Tensor:
        """Blend the label loss with the teacher's: both sides adjusted by the same prior, so
        a teacher trained with the logit-adjusted loss is matched as it was trained."""
        distiller = self.distiller
        if distiller is None:
            return loss
        teacher = self._adjusted(distiller.teacher_logits(images)).repeat(copies, 1)
        soft = distiller.loss(self._adjusted(logits), teacher)
        return (1.0 - distiller.weight) * loss + distiller.weight * soft

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        images, labels = batch
        mixed = self.mixer(images, labels) if self.mixer is not None else None
        inputs = mixed.images if mixed is not None else images
        logits = self(inputs)
        # An ensemble returns each member's logits, stacked member by member: each member is
        # trained on its own loss (nets.BatchNormCNNEnsemble).
        copies = getattr(self.model.net, "outputs_per_image", 1)
        if mixed is None:
            loss = self._loss(logits, labels.repeat(copies))
        else:  # scored against both images' labels, in proportion to their shares
            own = self._loss(logits, mixed.labels.repeat(copies))
            partner = self._loss(logits, mixed.partner_labels.repeat(copies))
            loss = mixed.share * own + (1.0 - mixed.share) * partner
        loss = self._distilled(loss, inputs, logits, copies)
        # Per-step logging turns the loss into a Python float every step (a host sync and
        # bookkeeping); log_every_step=false keeps only the epoch mean.
        self.log(
            "train/loss",
            loss,
            on_step=self.hparams.log_every_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(labels) * copies,
        )
        return loss

    def _evaluate(self, batch, metrics: MetricCollection, stage: str) -> torch.Tensor:
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
        return logits

    def on_validation_epoch_start(self) -> None:
        self.val_confusion.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        logits = self._evaluate(batch, self.val_metrics, "val")
        self.val_confusion.update(logits, batch[1])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        # Before the checkpoint callback saves this epoch: each checkpoint carries the
        # look-alikes of its own weights (gathered from every process under DDP).
        pairs = look_alike_pairs(self.val_confusion.compute().cpu(), self.class_names)
        self.card = dataclasses.replace(self.card, look_alikes=pairs)
        acc = self.trainer.callback_metrics.get("val/acc")
        if acc is not None:
            self.best_val_acc = torch.maximum(self.best_val_acc, acc.to(self.best_val_acc))
        self.log("val/acc_best", self.best_val_acc, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self.test_predictions = []

    def test_step(self, batch, batch_idx: int) -> None:
        logits = self._evaluate(batch, self.test_metrics, "test")
        self.test_predictions.append(logits.argmax(dim=1).cpu())

    def on_test_epoch_end(self) -> None:
        """Under DDP each process predicted its own shard of the test set: gather them all,
        in loader order, so the report counts every test image once."""
        if self.trainer.world_size > 1:
            self.test_predictions = [self._gather_shards(self.test_predictions)]

    def _gather_shards(self, batches: list[torch.Tensor]) -> torch.Tensor:
        mine = torch.cat(batches) if batches else torch.empty(0, dtype=torch.long)
        lengths = self.all_gather(torch.tensor(len(mine), device=self.device)).tolist()
        padded = torch.full((max(lengths),), -1, dtype=mine.dtype, device=self.device)
        padded[: len(mine)] = mine
        gathered = self.all_gather(padded).cpu()
        return unshard([row[:n] for row, n in zip(gathered, lengths, strict=True)])

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
        lengths = {k: v for k, v in candidates.items() if k in accepted and config.get(k) is None}
        if "pct_start" in accepted:  # OneCycleLR
            pct_start = config.get("pct_start", accepted["pct_start"].default)
            _check_warm_up(pct_start, lengths.get("total_steps", config.get("total_steps")))
        return lengths

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_CARD_KEY] = self.card.to_dict()
        # Every rank's generator states (a collective call: every rank saves).
        checkpoint[RANDOM_STATES_KEY] = random_states.collect_all_ranks()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume draws what a straight run would have drawn; checkpoints written before
        model cards kept the net's weights under `net.`."""
        if CHECKPOINT_CARD_KEY not in checkpoint:
            upgrade_legacy_state_dict(checkpoint["state_dict"])
        else:
            self.take_look_alikes(checkpoint)
        saved = checkpoint.get(RANDOM_STATES_KEY)
        if saved is not None:
            try:
                random_states.restore_rank(saved, self.global_rank)
            except (TypeError, ValueError, KeyError, RuntimeError, AttributeError) as exc:
                raise CheckpointError(
                    f"the checkpoint's random states are damaged ({type(exc).__name__}): "
                    "resume from another checkpoint"
                ) from None

    def take_look_alikes(self, checkpoint: dict[str, Any]) -> None:
        """The loaded weights' look-alikes (the test pass and the exported card then describe
        the best checkpoint, not the last validation pass)."""
        saved = ModelCard.from_dict(checkpoint[CHECKPOINT_CARD_KEY], "the checkpoint")
        if saved.class_names == self.card.class_names:
            self.card = dataclasses.replace(self.card, look_alikes=saved.look_alikes)


def _check_warm_up(pct_start: float, total_steps: Any) -> None:
    """OneCycleLR divides by the warm-up's length in steps, pct_start x total_steps - 1: a
    run so short that it is 0 fails in its first step (ZeroDivisionError) unless refused here."""
    if isinstance(total_steps, int) and float(pct_start * total_steps) - 1 == 0:
        raise ConfigError(
            f"model.scheduler.pct_start={pct_start} of {total_steps} training steps is a one-cycle "
            "warm-up of a single step, which OneCycleLR cannot schedule: train more steps "
            "(trainer.limit_train_batches, trainer.max_epochs) or change model.scheduler.pct_start"
        )


def upgrade_legacy_state_dict(state_dict: dict[str, Any]) -> None:
    """Rename a pre-card module state_dict's `net.*` keys to today's `model.net.*`, in place."""
    for key in [k for k in state_dict if k.startswith(LEGACY_NET_PREFIX)]:
        state_dict[NET_PREFIX + key.removeprefix(LEGACY_NET_PREFIX)] = state_dict.pop(key)
