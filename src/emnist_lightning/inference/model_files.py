"""Model files: find them (best/last/path), read and write them, and predict with any of them.

Every format carries a model card (model_card.py): a Lightning checkpoint under its
`model_card` key, the seed-style `character_recognition.torch` in `model_card.json` beside it,
an ONNX export in its metadata. Reading a file loads plain data only (`weights_only=True`,
JSON), checks the card and builds the net by name; files written before cards are read
through a fixed table of their net paths.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emnist_lightning.atomic_files import replaced_atomically, save_torch_file
from emnist_lightning.errors import CheckpointError, ModelFileError, first_line
from emnist_lightning.json_input import JSONInputError, parse_json
from emnist_lightning.models.card import (
    CHECKPOINT_CARD_KEY,
    LEGACY_NET_PREFIX,
    NET_PREFIX,
    ModelCard,
    NormalizedNet,
)
from emnist_lightning.models.seed_layout import in_seed_layout

STATE_DICT_NAME = "character_recognition.torch"
CARD_NAME = "model_card.json"
# What stood beside character_recognition.torch before model cards; still read.
LEGACY_MAPPING_NAME = "class_mapping.json"
ONNX_CARD_KEY = "model_card"
# Card and mapping files are a few KB; anything far larger is not one.
MAX_JSON_BYTES = 1_000_000


# -- finding model files ---------------------------------------------------------------------
# Beside a run's checkpoints: {"status": "running"} while it fits, "finished" once the fit
# ended normally. A killed or still-running run stays "running"; runs from before the file
# have none (their status is unknown and they count as finished, as they always did).
FIT_STATUS_NAME = "fit_status.json"
RUNNING, FINISHED = "running", "finished"


@dataclass(frozen=True)
class ModelChoice:
    """A model file and, in words, the rule that chose it (for the console's first lines)."""

    path: Path
    rule: str


def write_fit_status(checkpoint_dir: str | Path, status: str) -> None:
    """Record whether the run writing into `checkpoint_dir` is fitting or has finished."""
    write_json_atomically({"status": status}, Path(checkpoint_dir) / FIT_STATUS_NAME)


def fit_status(checkpoint_dir: Path) -> str | None:
    """RUNNING, FINISHED, or None for a run from before the status file (or an unreadable one)."""
    path = checkpoint_dir / FIT_STATUS_NAME
    try:
        data = read_json(path) if path.is_file() else None
    except ModelFileError:
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return status if status in (RUNNING, FINISHED) else None


def last_checkpoints(runs_dir: str | Path) -> list[Path]:
    """Every `last.ckpt` below `runs_dir`, newest (most recently written) first."""
    return sorted(
        Path(runs_dir).glob("**/checkpoints/last.ckpt"),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )


def newest_last_checkpoint(runs_dir: str | Path) -> Path:
    """The most recently written `last.ckpt` below `runs_dir` (what `ckpt_path=last` means)."""
    candidates = last_checkpoints(runs_dir)
    if not candidates:
        raise CheckpointError(
            f"ckpt_path=last found no checkpoints/last.ckpt under {runs_dir}: train a run first "
            "or pass ckpt_path=<path to a .ckpt file>"
        )
    return candidates[0]


def resolve_ckpt_path(ckpt_path: str | None, runs_dir: str | Path) -> Path | None:
    """Turn the `ckpt_path` override into an existing file (or None for a fresh run)."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        return newest_last_checkpoint(runs_dir)
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"ckpt_path={ckpt_path} does not exist: pass a model file, best or last"
        )
    return path


def newest_finished_last_checkpoint(runs_dir: str | Path) -> tuple[Path, int]:
    """The newest `last.ckpt` of a run that finished its fit, and how many newer runs were
    skipped because they did not (killed, or still training)."""
    candidates = last_checkpoints(runs_dir)
    if not candidates:
        raise CheckpointError(
            f"ckpt_path=best found no checkpoints/last.ckpt under {runs_dir}: train a run "
            "first or pass ckpt_path=<path to a model file>"
        )
    for skipped, last in enumerate(candidates):
        if fit_status(last.parent) != RUNNING:
            return last, skipped
    raise CheckpointError(
        f"ckpt_path=best found no finished run under {runs_dir} ({len(candidates)} did not "
        f"finish, the newest is {candidates[0].parent.parent}): let a run finish, or pass "
        "ckpt_path=last (the newest last.ckpt, finished or not) or a path to a model file"
    )


def best_of_run(last: Path) -> Path:
    """The best checkpoint a run's last.ckpt records (last.ckpt itself when it kept none)."""
    recorded = [
        state.get("best_model_path")
        for state in read_checkpoint(last).get("callbacks", {}).values()
        if isinstance(state, dict) and state.get("best_model_path")
    ]
    if not recorded:  # checkpointing kept no best (e.g. no validation): last is all there is
        return last
    # The recorded path is data from the file: only its name counts, looked up beside
    # last.ckpt (where the run wrote it, and where it is after the folder moved), so a planted
    # path cannot make predict/serve/export load a file from elsewhere.
    name = Path(str(recorded[0])).name
    best = last.parent / name
    beside = os.path.dirname(os.path.realpath(best)) == os.path.realpath(last.parent)
    if best.suffix != ".ckpt" or not beside or not best.is_file():
        raise CheckpointError(
            f"{last} records {name[:80]!r} as its best checkpoint but no such .ckpt file is "
            "beside it: pass ckpt_path=last or a path to a .ckpt file"
        )
    return best


def best_checkpoint_of_newest_run(runs_dir: str | Path) -> Path:
    """The best checkpoint of the newest finished run (what `ckpt_path=best` means)."""
    return best_of_run(newest_finished_last_checkpoint(runs_dir)[0])


def choose_model_file(spec: str, runs_dir: str | Path) -> ModelChoice:
    """`best`, `last`, or a path to a .ckpt, .onnx or character_recognition.torch file, with
    the rule that chose it."""
    if spec == "best":
        last, skipped = newest_finished_last_checkpoint(runs_dir)
        rule = f"ckpt_path=best: the best checkpoint of the newest finished run under {runs_dir}"
        if skipped:
            rule += f" (skipped {skipped} newer run{'s' * (skipped > 1)} that did not finish)"
        return ModelChoice(best_of_run(last), rule)
    if spec == "last":
        rule = f"ckpt_path=last: the newest last.ckpt under {runs_dir}, finished or not"
        return ModelChoice(newest_last_checkpoint(runs_dir), rule)
    path = resolve_ckpt_path(spec, runs_dir)
    if path is None:
        raise CheckpointError("ckpt_path is empty: pass a .ckpt/.onnx/.torch file, best or last")
    return ModelChoice(path, "ckpt_path: the file given")


def resolve_model_path(spec: str, runs_dir: str | Path) -> Path:
    """`best`, `last`, or a path to a .ckpt, .onnx or character_recognition.torch file."""
    return choose_model_file(spec, runs_dir).path


# -- reading ---------------------------------------------------------------------------------
def _load_plain(path: str | Path, what: str, fix: str) -> Any:
    """torch.load with `weights_only=True`: tensors and plain containers, never objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(
            f"{path} is not a readable {what} ({first_line(exc)}): {fix}"
        ) from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint as plain data (`weights_only=True`), with a clear error if it is not one."""
    checkpoint = _load_plain(path, "checkpoint", "pass a .ckpt written by train.py")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint of this project: pass a .ckpt written by train.py"
        )
    return checkpoint


def card_of_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> ModelCard:
    """The checkpoint's model card (or, for files written before cards, its hyperparameters')."""
    if CHECKPOINT_CARD_KEY in checkpoint:
        return ModelCard.from_dict(checkpoint[CHECKPOINT_CARD_KEY], str(path))
    if "hyper_parameters" in checkpoint:
        return ModelCard.from_legacy(checkpoint["hyper_parameters"], str(path))
    raise ModelFileError(f"{path}: no model card: pass a .ckpt written by train.py")


def _net_weights(checkpoint: dict[str, Any]) -> dict[str, Any]:
    prefix = NET_PREFIX if CHECKPOINT_CARD_KEY in checkpoint else LEGACY_NET_PREFIX
    state = checkpoint["state_dict"]
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def _load_weights(model: NormalizedNet, weights: Any, path: Path, pair: str = "") -> None:
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise ModelFileError(f"{path}: the weights are not a state_dict of tensors")
    broken = next(
        (k for k, v in weights.items() if v.is_floating_point() and not v.isfinite().all()), None
    )
    if broken is not None:
        raise ModelFileError(
            f"{path}: weight {broken} holds NaN or infinite values (training diverged or the "
            "file is damaged): use an earlier checkpoint or retrain"
        )
    try:
        model.net.load_state_dict(weights)
    except RuntimeError as exc:
        fix = f"use the pair written together ({pair})" if pair else "use a file train.py wrote"
        raise ModelFileError(
            f"{path}: the weights do not fit the model card's net ({first_line(exc)}): {fix}"
        ) from None


@dataclass
class LoadedModel:
    """A model file's card and its ready net (eval mode, on the CPU)."""

    card: ModelCard
    model: NormalizedNet
    path: Path


def check_weights_fit(checkpoint: dict[str, Any], card: ModelCard, path: str | Path) -> None:
    """Refuse, in one line, a checkpoint whose net weights do not fit its own card (before a
    resume hands them to Lightning, whose load_state_dict would fail with a traceback)."""
    _load_weights(card.build_model(), _net_weights(checkpoint), Path(path))


def load_checkpoint_model(path: str | Path, channels_last: bool = False) -> LoadedModel:
    """A ready model from a Lightning checkpoint alone (no datamodule, no training config)."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    card = card_of_checkpoint(checkpoint, path)
    model = card.build_model(channels_last)
    _load_weights(model, _net_weights(checkpoint), path)
    return LoadedModel(card, model.eval(), path)


def read_json(path: Path) -> Any:
    """A small JSON file as plain data, or one line saying why it cannot be (size and nesting
    are capped before parsing: a deeply nested file would crash the parser)."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ModelFileError(
                f"{path}: too large for a model card ({path.stat().st_size:,} bytes)"
            )
        return parse_json(path.read_bytes(), MAX_JSON_BYTES)
    except (OSError, JSONInputError) as exc:
        raise ModelFileError(
            f"{path} is not a readable JSON model card ({first_line(exc)}): "
            "use the one written with the weights"
        ) from None


def card_beside(weights_path: Path) -> tuple[ModelCard, Path]:
    """The card written beside a state_dict: model_card.json, or a pre-card class_mapping.json."""
    card_path = weights_path.with_name(CARD_NAME)
    if card_path.is_file():
        return ModelCard.from_dict(read_json(card_path), str(card_path)), card_path
    legacy = weights_path.with_name(LEGACY_MAPPING_NAME)
    if legacy.is_file():
        return ModelCard.from_legacy(read_json(legacy), str(legacy)), legacy
    raise CheckpointError(
        f"{weights_path} needs {CARD_NAME} beside it (written with it by train.py or export.py)"
    )


def load_state_dict_model(path: str | Path, channels_last: bool = False) -> LoadedModel:
    """A ready model from a seed-style state_dict and the card beside it."""
    path = Path(path)
    card, card_path = card_beside(path)
    weights = _load_plain(path, "state_dict", "use the file train.py or export.py wrote")
    model = card.build_model(channels_last)
    _load_weights(model, weights, path, pair=f"{path.name} + {card_path.name}")
    return LoadedModel(card, model.eval(), path)


def load_model(path: str | Path, channels_last: bool = False) -> LoadedModel:
    """A ready PyTorch model from a checkpoint or a state_dict + card (`channels_last`: the
    net in NHWC layout, for a model that runs on training's batches)."""
    path = Path(path)
    if path.suffix in (".torch", ".pt", ".pth"):
        return load_state_dict_model(path, channels_last)
    return load_checkpoint_model(path, channels_last)


# -- writing ---------------------------------------------------------------------------------
def write_json_atomically(data: Any, path: Path) -> None:
    """Write JSON through a temp file and a rename: readers see the old file or the new one."""
    with replaced_atomically(path) as partial:
        partial.write_text(json.dumps(data, indent=2))


def export_state_dict(card: ModelCard, net: torch.nn.Module, folder: str | Path) -> Path:
    """Write the net's state_dict as the seed did, with the model card beside it.

    A seed CNN's weights are written in the seed script's layout (its transposed images and
    0.5/0.5 normalisation folded in, models/seed_layout.py), so the seed's own script predicts
    correctly with the file; the card says so, and `load_model` reads it back as before.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card, state = in_seed_layout(card, {k: v.detach().cpu() for k, v in net.state_dict().items()})
    weights = folder / STATE_DICT_NAME
    with replaced_atomically(weights) as partial:
        save_torch_file(state, partial)
    write_json_atomically(card.to_dict(), folder / CARD_NAME)
    return weights
