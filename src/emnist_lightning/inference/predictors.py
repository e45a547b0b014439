"""Predictors: one interface over every model file this project writes (PyTorch or ONNX),
so predict, evaluate, the server and the benchmarks run any of them the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from emnist_lightning.errors import CheckpointError, ModelFileError
from emnist_lightning.inference.model_files import (
    MAX_JSON_BYTES,
    ONNX_CARD_KEY,
    LoadedModel,
    load_model,
)
from emnist_lightning.json_input import JSONInputError, parse_json
from emnist_lightning.models.card import ModelCard, check_class_names
from emnist_lightning.models.look_alikes import Pair


class Predictor(Protocol):
    """Maps upright (B, 1, 28, 28) images in [0, 1] to class probabilities."""

    class_names: list[str]
    # Pairs of classes the model mixes up (its card's; none for files written before).
    look_alikes: tuple[Pair, ...]

    def probabilities(self, images: torch.Tensor) -> torch.Tensor: ...


def top_k(
    probabilities: torch.Tensor, class_names: list[str], k: int
) -> list[list[tuple[str, float]]]:
    """Per image, the k most probable characters with their probabilities."""
    values, indices = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    return [
        [(class_names[int(i)], float(v)) for v, i in zip(row_v, row_i, strict=True)]
        for row_v, row_i in zip(values, indices, strict=True)
    ]


def view_probabilities(predictor: Predictor, views: list[torch.Tensor]) -> torch.Tensor:
    """Per image, the model's probabilities averaged over its (V, 1, 28, 28) views
    (preprocess.pen_width_views; a (1, 28, 28) input is one view): one forward pass for all
    views of all images -> (N, C)."""
    views = [v if v.dim() == 4 else v.unsqueeze(0) for v in views]
    counts = [len(v) for v in views]
    probabilities = predictor.probabilities(torch.cat(views))
    return torch.stack([p.mean(dim=0) for p in probabilities.split(counts)])


class TorchPredictor:
    """Runs a loaded PyTorch model on `device`; takes and returns CPU tensors."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        loaded.model.to(self.device)
        self.loaded = loaded
        self.class_names = list(loaded.card.class_names)
        self.look_alikes = loaded.card.look_alikes

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self.loaded.model(images.to(self.device)).softmax(dim=1).cpu()


def onnx_card(metadata: dict[str, str], path: Path) -> ModelCard | None:
    """The model card in an ONNX export's metadata (None for exports written before cards)."""
    if ONNX_CARD_KEY not in metadata:
        return None
    try:
        data = parse_json(metadata[ONNX_CARD_KEY], MAX_JSON_BYTES)
    except JSONInputError as exc:
        raise ModelFileError(f"{path}: its model_card metadata is {exc}") from None
    return ModelCard.from_dict(data, str(path))


def onnx_class_names(metadata: dict[str, str], path: Path) -> list[str]:
    """The class characters in an ONNX export's metadata (its card, or pre-card class_names)."""
    card = onnx_card(metadata, path)
    if card is not None:
        return list(card.class_names)
    if "class_names" in metadata:
        try:
            names = parse_json(metadata["class_names"], MAX_JSON_BYTES)
        except JSONInputError as exc:
            raise ModelFileError(f"{path}: its class_names metadata is {exc}") from None
        return list(check_class_names(names, str(path)))
    raise ModelFileError(f"{path} has no model_card metadata: export it with export.py")


class OnnxPredictor:
    """Runs an exported model with onnxruntime; class names come from the file's model card."""

    def __init__(self, path: Path, device: str | torch.device = "cpu") -> None:
        try:
            import onnxruntime
        except ImportError:
            raise CheckpointError(
                "running .onnx models needs onnxruntime: pip install -e '.[onnx]'"
            ) from None
        try:
            providers = ["CPUExecutionProvider"]
            if torch.device(device).type == "cuda":
                providers.insert(0, "CUDAExecutionProvider")
            self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        except Exception as exc:
            raise CheckpointError(
                f"{path} is not a readable ONNX model ({type(exc).__name__})"
            ) from None
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.class_names = onnx_class_names(metadata, path)
        card = onnx_card(metadata, path)
        self.look_alikes = card.look_alikes if card is not None else ()
        self.input_name = self.session.get_inputs()[0].name
        # NaN or infinite weights turn any input, a blank one too, into NaN outputs.
        if not self.probabilities(torch.zeros(1, 1, 28, 28)).isfinite().all():
            raise ModelFileError(
                f"{path}: its weights hold NaN or infinite values (training diverged or the "
                "file is damaged): export a sound checkpoint again"
            )

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {self.input_name: images.numpy().astype("float32")})
        if logits.ndim != 2 or logits.shape[1] != len(self.class_names):
            raise ModelFileError(
                f"the ONNX model returns {tuple(logits.shape)} outputs for "
                f"{len(self.class_names)} classes: export it again with export.py"
            )
        return torch.from_numpy(logits).softmax(dim=1)


def load_predictor(path: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """A predictor for any model file this project writes, running on `device`."""
    path = Path(path)
    if path.suffix == ".onnx":
        return OnnxPredictor(path, device)
    return TorchPredictor(load_model(path), device)
