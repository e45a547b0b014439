"""ONNX export with normalisation built in and the class characters in the file's metadata."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .module import CharacterClassifier


class NormalizedNet(nn.Module):
    """The net behind the model's own normalisation: takes upright images in [0, 1]."""

    def __init__(self, net: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net = net
        self.mean = mean
        self.std = std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std)


def export_onnx(model: CharacterClassifier, path: str | Path) -> Path:
    """Write `model` as ONNX (input `images` (B, 1, 28, 28) in [0, 1], output `logits`)."""
    try:
        import onnx
    except ImportError:
        raise UserError("ONNX export needs the onnx extra: pip install -e '.[onnx]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = (
        NormalizedNet(model.net, model.hparams.input_mean, model.hparams.input_std).cpu().eval()
    )
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapped,
            (torch.zeros(2, 1, 28, 28),),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    program.save(str(path))
    exported = onnx.load(str(path))
    metadata = {
        "class_names": json.dumps(model.class_names),
        "input": "images: float32 (batch, 1, 28, 28), upright, light ink on dark, values in [0, 1]",
        "output": "logits: float32 (batch, num_classes)",
    }
    onnx.helper.set_model_props(exported, metadata)
    onnx.save(exported, str(path))
    return path
