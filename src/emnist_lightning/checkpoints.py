"""Finding, checking and exporting checkpoints; loading one for inference with no datamodule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .module import CharacterClassifier

STATE_DICT_NAME = "character_recognition.torch"
CLASS_MAPPING_NAME = "class_mapping.json"


def newest_last_checkpoint(runs_dir: str | Path) -> Path:
    """The most recently written `last.ckpt` below `runs_dir` (what `ckpt_path=last` means)."""
    candidates = sorted(
        Path(runs_dir).glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime
    )
    if not candidates:
        raise CheckpointError(
            f"ckpt_path=last found no checkpoints/last.ckpt under {runs_dir}: train a run first "
            "or pass ckpt_path=<path to a .ckpt file>"
        )
    return candidates[-1]


def resolve_ckpt_path(ckpt_path: str | None, runs_dir: str | Path) -> Path | None:
    """Turn the `ckpt_path` override into an existing file (or None for a fresh run)."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        return newest_last_checkpoint(runs_dir)
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"ckpt_path={ckpt_path} does not exist: pass a .ckpt file or ckpt_path=last"
        )
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint as plain data (`weights_only=True`), with a clear error if it is not one."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({first_line}): pass a .ckpt written by train.py"
        ) from None
    if not isinstance(checkpoint, dict) or "hyper_parameters" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint of this project: pass a .ckpt written by train.py"
        )
    return checkpoint


def check_compatible(checkpoint: dict[str, Any], path: str | Path, class_names: list[str]) -> None:
    """Refuse to resume a checkpoint trained for other classes than the data has."""
    saved = checkpoint["hyper_parameters"].get("class_names")
    if saved != class_names:
        raise CheckpointError(
            f"{path} was trained on {len(saved or [])} classes but data.split has {len(class_names)}: "
            "resume with the split it was trained on, or start a fresh run"
        )


def load_for_inference(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> CharacterClassifier:
    """A ready-to-predict model from a checkpoint alone (no datamodule, no training config)."""
    read_checkpoint(path)
    model = CharacterClassifier.load_from_checkpoint(
        path, map_location=map_location, weights_only=True
    )
    return model.eval()


def export_state_dict(model: CharacterClassifier, folder: str | Path) -> tuple[Path, Path]:
    """Write the net's state_dict as the seed did, plus a JSON of what it needs to be used."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / STATE_DICT_NAME
    mapping = folder / CLASS_MAPPING_NAME
    torch.save({k: v.detach().cpu() for k, v in model.net.state_dict().items()}, weights)
    hparams = model.hparams
    mapping.write_text(
        json.dumps(
            {
                "class_names": list(hparams.class_names),
                "net": hparams.net,
                "input_mean": hparams.input_mean,
                "input_std": hparams.input_std,
                "orientation": "upright",
            },
            indent=2,
        )
    )
    return weights, mapping
