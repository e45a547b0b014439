"""Predictors for every kind of trained model file: Lightning checkpoint, state_dict, ONNX."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from hydra.utils import instantiate

from .checkpoints import (
    CLASS_MAPPING_NAME,
    load_for_inference,
    newest_last_checkpoint,
    read_checkpoint,
    resolve_ckpt_path,
)
from .errors import CheckpointError
from .labels import split_info


class Predictor(Protocol):
    """Maps upright (B, 1, 28, 28) images in [0, 1] to class probabilities."""

    class_names: list[str]

    def probabilities(self, images: torch.Tensor) -> torch.Tensor: ...


@dataclass
class TorchPredictor:
    model: torch.nn.Module
    class_names: list[str]
    input_mean: float
    input_std: float

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model((images - self.input_mean) / self.input_std)
        return logits.softmax(dim=1)


class OnnxPredictor:
    """Runs an exported model with onnxruntime; class names come from the file's metadata."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise CheckpointError(
                "running .onnx models needs onnxruntime: pip install -e '.[onnx]'"
            ) from None
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise CheckpointError(
                f"{path} is not a readable ONNX model ({type(exc).__name__})"
            ) from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "class_names" not in metadata:
            raise CheckpointError(f"{path} has no class_names metadata: export it with export.py")
        self.class_names = json.loads(metadata["class_names"])
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {self.input_name: images.numpy().astype("float32")})
        return torch.from_numpy(logits).softmax(dim=1)


def check_split_matches(class_names: list[str], split: str) -> None:
    """Refuse to score a model on a split whose classes it was not trained for."""
    info = split_info(split)
    if list(info.characters) != list(class_names):
        raise CheckpointError(
            f"the model has {len(class_names)} classes but split '{split}' has "
            f"{info.num_classes}: set split= to the split it was trained on"
        )


def best_checkpoint_of_newest_run(runs_dir: str | Path) -> Path:
    """The best checkpoint recorded by the newest run's last.ckpt (what `ckpt_path=best` means)."""
    last = newest_last_checkpoint(runs_dir)
    for state in read_checkpoint(last).get("callbacks", {}).values():
        best = Path(state.get("best_model_path") or "")
        if best.is_file():
            return best
    return last


def resolve_model_path(spec: str, runs_dir: str | Path) -> Path:
    """`best`, `last`, or a path to a .ckpt, .onnx or character_recognition.torch file."""
    if spec == "best":
        return best_checkpoint_of_newest_run(runs_dir)
    path = resolve_ckpt_path(spec, runs_dir)
    if path is None:
        raise CheckpointError("ckpt_path is empty: pass a .ckpt/.onnx/.torch file, best or last")
    return path


def _from_state_dict(path: Path) -> TorchPredictor:
    mapping_path = path.with_name(CLASS_MAPPING_NAME)
    if not mapping_path.is_file():
        raise CheckpointError(
            f"{path} needs {CLASS_MAPPING_NAME} beside it (written with it by train.py)"
        )
    mapping = json.loads(mapping_path.read_text())
    class_names = mapping["class_names"]
    net = instantiate(mapping["net"], num_classes=len(class_names))
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state_dict)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[0]
        raise CheckpointError(
            f"{path} does not fit {mapping_path.name} ({detail}): use the pair written together"
        ) from None
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a readable state_dict ({type(exc).__name__})"
        ) from None
    return TorchPredictor(net.eval(), class_names, mapping["input_mean"], mapping["input_std"])


def load_predictor(path: Path) -> Predictor:
    """A predictor for any model file this project writes."""
    if path.suffix == ".onnx":
        return OnnxPredictor(path)
    if path.suffix in (".torch", ".pt", ".pth"):
        return _from_state_dict(path)
    model = load_for_inference(path)
    return TorchPredictor(
        model.net, model.class_names, model.hparams.input_mean, model.hparams.input_std
    )
