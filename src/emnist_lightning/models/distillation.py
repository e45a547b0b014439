"""Knowledge distillation (Hinton et al., 2015): a trained model file, the teacher, scores
every training batch, and the student learns its soft class distribution beside the labels.

A teacher that is an ensemble (`model=bn_cnn_ensemble`) hands its averaged judgement to one
net of the student's size, which then predicts at a single net's cost. The teacher is read as
any model file is (`inference/model_files.py`: plain data, weights_only), runs frozen in eval
mode, and is never part of the student's state_dict, checkpoint or exports. Chosen with
`model/distillation=teacher model.distillation.teacher=PATH`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from emnist_lightning.errors import ConfigError, UserError
from emnist_lightning.inference.model_files import load_model
from emnist_lightning.models.card import NormalizedNet


class Distillation:
    """A frozen teacher and the loss that pulls the student's distribution towards it."""

    def __init__(
        self,
        teacher: str,
        weight: float = 0.5,
        temperature: float = 2.0,
        channels_last: bool = False,
    ) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"model.distillation.weight={weight} must be in [0, 1]")
        if not temperature > 0:
            raise ConfigError(f"model.distillation.temperature={temperature} must be > 0")
        self.path = Path(teacher)
        if not self.path.is_file():
            raise ConfigError(
                f"model.distillation.teacher={teacher} is not a file: give a checkpoint or a "
                "state_dict (with its model_card.json) that train.py or export.py wrote"
            )
        try:
            loaded = load_model(self.path, channels_last)
        except UserError as exc:  # say which setting named the file
            raise type(exc)(f"model.distillation.teacher: {exc}") from None
        self.class_names = list(loaded.card.class_names)
        # The teacher's own test-time shifts would cost 5x its forward on every batch, for
        # targets the student then learns on plain images anyway: it scores the plain batch.
        loaded.model.test_time_shift = 0
        self.teacher: NormalizedNet = loaded.model.requires_grad_(False)
        self.weight = float(weight)
        self.temperature = float(temperature)

    def check_classes(self, class_names: list[str]) -> None:
        """Refuse, in one line, a teacher that names other classes than the student."""
        if self.class_names != list(class_names):
            raise ConfigError(
                f"model.distillation.teacher={self.path} predicts {len(self.class_names)} "
                f"classes ({''.join(self.class_names)[:60]}), the student "
                f"{len(class_names)} ({''.join(class_names)[:60]}): use a teacher trained on "
                "the same data.split"
            )

    def to(self, device: torch.device) -> Distillation:
        self.teacher.to(device)
        return self

    @torch.no_grad()
    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's scores for a batch (logits, or an ensemble's mean log-probabilities:
        the same distribution under softmax)."""
        return self.teacher(images).float()

    def loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """KL(teacher || student) of the distributions softened by the temperature, times its
        square so that its gradients keep their size whatever the temperature."""
        t = self.temperature
        student = F.log_softmax(student_logits.float() / t, dim=-1)
        teacher = F.log_softmax(teacher_logits / t, dim=-1)
        return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * t * t
