"""Fine-tuning: a new run that starts from a trained model's weights (`init_from=<file>`).

Resuming (`ckpt_path=`) continues a run where it stopped: its optimizer, schedule, epoch and
random states. Fine-tuning starts a fresh run (new optimizer and schedule, epoch 0, its own
run folder) whose net begins with another model's weights, e.g. to teach it a user's own
hand from their corrections (`data.extra=[...]`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from emnist_lightning.errors import CheckpointError, ConfigError
from emnist_lightning.inference.model_files import load_model
from emnist_lightning.models.classifier import CharacterClassifier


def start_from_weights(model: CharacterClassifier, init_from: str) -> Path:
    """Load a model file's weights into `model`, refusing one of another net or classes."""
    path = Path(init_from).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"init_from={init_from} does not exist: pass a .ckpt or character_recognition.torch"
        )
    loaded = load_model(path)
    diffs = loaded.card.differences(model.card)
    if diffs:
        raise CheckpointError(
            f"init_from={init_from} is another model ({'; '.join(diffs[:4])}; file vs config): "
            "configure the model it was trained as (e.g. experiment=<its recipe>)"
        )
    model.model.net.load_state_dict(loaded.model.net.state_dict())
    model.card = dataclasses.replace(model.card, look_alikes=loaded.card.look_alikes)
    return path
