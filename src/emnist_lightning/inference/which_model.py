"""Which model is answering: every command that loads one says, in its first lines, which
file, chosen by which rule, from which run and experiment, when, and how good it was on
validation, so `ckpt_path=best` never silently means a 1-epoch smoke test."""

from __future__ import annotations

import logging
from pathlib import Path

from emnist_lightning.inference.model_files import (
    MAX_JSON_BYTES,
    ModelChoice,
    choose_model_file,
    read_checkpoint,
)
from emnist_lightning.json_input import JSONInputError, parse_json
from emnist_lightning.models.provenance import PROVENANCE_KEY, Provenance

log = logging.getLogger(__name__)


def _onnx_provenance(path: Path) -> Provenance:
    try:
        import onnx
    except ImportError:
        return Provenance()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # the predictor that loads it next says what is wrong, in one line
        return Provenance()
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    text = metadata.get(PROVENANCE_KEY, "")
    if not text:
        return Provenance()
    try:
        return Provenance.from_dict(parse_json(text, MAX_JSON_BYTES))
    except JSONInputError:
        return Provenance()


def read_provenance(path: Path) -> Provenance:
    """The training record a model file holds (all unknown when it has none): a checkpoint's
    `provenance` entry, an ONNX file's metadata; state_dict files carry none."""
    if path.suffix == ".onnx":
        return _onnx_provenance(path)
    if path.suffix in (".torch", ".pt", ".pth"):
        return Provenance()
    return Provenance.from_dict(read_checkpoint(path).get(PROVENANCE_KEY))


def describe_model(choice: ModelChoice, provenance: Provenance) -> list[str]:
    """The console's first lines about the model: the file, the rule, the training record."""
    return [f"Model: {choice.path}", f"  chosen by {choice.rule}", f"  {provenance.describe()}"]


def announce_model(spec: str, runs_dir: str | Path) -> Path:
    """Choose the model file for `ckpt_path=spec`, say which one it is, and return its path."""
    choice = choose_model_file(spec, runs_dir)
    for line in describe_model(choice, read_provenance(choice.path)):
        log.info("%s", line)
    return choice.path
