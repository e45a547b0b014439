"""The resume check: a checkpoint continues only into the model and optimizer it was
trained with, said in one line naming what differs."""

from __future__ import annotations

from pathlib import Path

from emnist_lightning.errors import CheckpointError
from emnist_lightning.inference.model_files import (
    card_of_checkpoint,
    check_weights_fit,
    read_checkpoint,
)
from emnist_lightning.models.card import ModelCard
from emnist_lightning.moved_modules import current_path


def check_resume_compatible(
    path: Path, configured: ModelCard, optimizer_target: str | None = None
) -> None:
    """Refuse, in one line naming what differs, to resume a checkpoint into another model,
    or with another optimizer (whose state would not fit)."""
    checkpoint = read_checkpoint(path)
    card = card_of_checkpoint(checkpoint, path)
    diffs = card.differences(configured)
    if diffs:
        raise CheckpointError(
            f"{path} was trained with another model or data ({'; '.join(diffs[:4])}; "
            "checkpoint vs config): resume with the config it was trained with, or start a "
            "fresh run without ckpt_path"
        )
    check_weights_fit(checkpoint, card, path)
    saved = (checkpoint.get("hyper_parameters") or {}).get("optimizer")
    saved_target = saved.get("_target_") if isinstance(saved, dict) else None
    if (
        optimizer_target
        and isinstance(saved_target, str)
        and current_path(saved_target) != current_path(optimizer_target)
    ):
        raise CheckpointError(
            f"{path} was trained with optimizer {saved_target[:80]}, this run configures "
            f"{optimizer_target}: resume with the optimizer it was trained with "
            "(model.optimizer._target_), or start a fresh run without ckpt_path"
        )
