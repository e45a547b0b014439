"""ONNX export: the model card's normalising wrapper as the graph, the card as metadata."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig

from emnist_lightning.atomic_files import replaced_atomically
from emnist_lightning.config_checks import validate_config
from emnist_lightning.errors import ConfigError, UserError, first_line
from emnist_lightning.inference.model_files import (
    CARD_NAME,
    ONNX_CARD_KEY,
    export_state_dict,
    load_model,
)
from emnist_lightning.inference.which_model import announce_model, read_provenance
from emnist_lightning.models.card import ORIENTATION, ModelCard, NormalizedNet
from emnist_lightning.models.provenance import PROVENANCE_KEY, Provenance
from emnist_lightning.training.tracking import log_exports

log = logging.getLogger(__name__)
FORMATS = ("onnx", "state_dict")
# The graph's interface (input and output as GRAPH_INPUT and GRAPH_OUTPUT say): the ONNX
# model_version, raised when either changes.
GRAPH_VERSION = 1
GRAPH_INPUT = {
    "input": "images: float32, shape (batch, 1, 28, 28): one grayscale 28x28 image per character",
    "input_orientation": "upright, as a person reads the character (not EMNIST's stored, "
    "transposed images)",
    "input_polarity": "light ink on a dark background: ink 1.0, background 0.0",
    "input_scale": "0.0 to 1.0 (8-bit pixels / 255), the brightest ink pixel at 1.0",
    "input_normalisation": "inside the graph: pass the 0..1 pixels as they are, subtract and "
    "divide nothing",
    "preprocessing": "the model learnt EMNIST's look: the character cropped to its ink, centred "
    "in a square with its longer side spanning about 24 of the 28 pixels, strokes 2 to 4 "
    "pixels wide, slightly blurred; see the emnist_look function in emnist-lightning's "
    "docs/using-a-model.md",
}
GRAPH_OUTPUT = {
    "output": "logits: float32, shape (batch, number of classes); argmax is the prediction, "
    "softmax the probabilities (with the card's test_time_shift > 0, the mean "
    "log-probabilities of the shifted views)",
}


def graph_metadata(card: ModelCard) -> dict[str, str]:
    """What a program that knows nothing of this project needs to run the graph: its input
    stated exactly, the class characters in output order, and the card of the graph as a
    whole (it takes upright 0..1 images and normalises them itself, so its card says mean 0,
    std 1: nothing to apply)."""
    graph_card = dataclasses.replace(card, input_mean=0.0, input_std=1.0, orientation=ORIENTATION)
    return {
        **GRAPH_INPUT,
        **GRAPH_OUTPUT,
        "class_names": json.dumps(list(card.class_names)),
        ONNX_CARD_KEY: json.dumps(graph_card.to_dict()),
    }


def export_onnx(
    card: ModelCard,
    model: NormalizedNet,
    path: str | Path,
    provenance: Provenance | None = None,
) -> Path:
    """Write `model` as ONNX: input `images` (B, 1, 28, 28) in [0, 1], output `logits`;
    the card (and the training record, when known) in its metadata."""
    try:
        import onnx
    except ImportError:
        raise UserError("ONNX export needs the onnx extra: pip install -e '.[onnx]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = copy.deepcopy(model).cpu().float().eval()
    batch = torch.export.Dim("batch", min=1, max=65536)
    with replaced_atomically(path) as partial:
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
        program.save(str(partial))
        exported = onnx.load(str(partial))
        metadata = graph_metadata(card)
        if provenance is not None and provenance.to_dict():
            metadata[PROVENANCE_KEY] = json.dumps(provenance.to_dict())
        onnx.helper.set_model_props(exported, metadata)
        # Unset, onnxruntime reports the model version as INT64 max.
        exported.model_version = GRAPH_VERSION
        onnx.save(exported, str(partial))
    return path


def export(cfg: DictConfig) -> dict[str, Path]:
    """Write the formats `cfg.formats` asks for from any model file; returns their paths."""
    validate_config(cfg)
    # formats=onnx names one format (a string is not a list of its letters).
    formats = [cfg.formats] if isinstance(cfg.formats, str) else list(cfg.formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ConfigError(f"formats={formats} has unknown {unknown}: use any of {list(FORMATS)}")
    model_path = announce_model(str(cfg.ckpt_path), cfg.train_runs_dir)
    loaded = load_model(model_path)
    out_dir = Path(cfg.paths.output_dir)
    written: dict[str, Path] = {}
    if "onnx" in formats:
        written["onnx"] = export_onnx(
            loaded.card, loaded.model, out_dir / "model.onnx", read_provenance(model_path)
        )
    if "state_dict" in formats:
        written["state_dict"] = export_state_dict(loaded.card, loaded.model.net, out_dir)
    log.info("Exported %s:", loaded.path)
    try:
        tracked = log_exports(model_path, written.values())
    except Exception as exc:  # the files are written; tracking them is a bonus
        log.warning("  not logged to the training run's MLflow run: %s", first_line(exc))
        tracked = None
    if tracked:
        log.info("  also logged to its training run's MLflow run %s (artifacts: export/)", tracked)
    if "onnx" in written:
        log.info(
            "  ONNX (the net with its normalisation; card in the metadata): %s", written["onnx"]
        )
    if "state_dict" in written:
        log.info(
            "  state_dict (the seed's format) with its card: %s + %s",
            written["state_dict"],
            CARD_NAME,
        )
    return written
