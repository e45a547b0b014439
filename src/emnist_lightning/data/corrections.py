"""A folder of users' corrections: the one place its layout is written and read.

Each correction is three files sharing a name: `<id>.png`, the 28x28 input the model saw
(upright, light ink on dark, as training images are); `<id>.drawing.png`, the image the user
sent (the page's canvas or their photo); and `<id>.json`, the right character, the page's
strokes and when it was saved. The JSON is written last, each file through a rename, so a
correction exists only once all three are complete. Everything read back is checked as data:
`train.py data.extra=[<folder>]` refuses, in one line, a file that is not what it should be.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from emnist_lightning.atomic_files import replaced_atomically
from emnist_lightning.data.labels import class_of_character
from emnist_lightning.errors import DataFilesError, UserError
from emnist_lightning.json_input import JSONInputError, parse_json

FORMAT_VERSION = 1
INPUT_SUFFIX = ".png"
DRAWING_SUFFIX = ".drawing.png"
RECORD_SUFFIX = ".json"
IMAGE_SIZE = 28
# A record holds one character and the page's strokes: far below this.
MAX_RECORD_BYTES = 1_000_000
MAX_INPUT_BYTES = 100_000
# The page's strokes: at most this many strokes and points in all.
MAX_STROKES = 100
MAX_POINTS = 20_000
# A record nests strokes -> points -> numbers inside its object: 4 levels.
MAX_STROKES_DEPTH = 4


class CorrectionError(UserError):
    """A correction that cannot be stored as sent (e.g. strokes that are not strokes)."""


class CorrectionsFullError(CorrectionError):
    """The folder has reached its size cap."""


@dataclass(frozen=True)
class Correction:
    """One stored correction, as training reads it."""

    image: torch.Tensor  # (1, 28, 28) uint8, upright, light ink on dark
    character: str


def check_strokes(strokes: Any) -> list[list[list[float]]]:
    """The page's strokes as plain lists of [x, y] numbers, or a CorrectionError."""
    problem = "strokes must be a list of strokes, each a list of [x, y] numbers"
    if not isinstance(strokes, list) or len(strokes) > MAX_STROKES:
        raise CorrectionError(f"{problem}, at most {MAX_STROKES} strokes")
    points = 0
    for stroke in strokes:
        if not isinstance(stroke, list):
            raise CorrectionError(problem)
        for p in stroke:
            if not (
                isinstance(p, list)
                and len(p) == 2
                and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                    for v in p
                )
            ):
                raise CorrectionError(problem)
        points += len(stroke)
    if points > MAX_POINTS:
        raise CorrectionError(f"{problem}, at most {MAX_POINTS} points in all")
    return strokes


def folder_bytes(folder: Path) -> int:
    """What the corrections already take on disk."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _png(image: torch.Tensor) -> bytes:
    pixels = (image.squeeze(0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_correction(
    folder: Path,
    model_input: torch.Tensor,
    drawing: bytes,
    character: str,
    strokes: list,
    max_bytes: int,
) -> str:
    """Store one correction (model_input: (1, 28, 28) floats in [0, 1]); returns its id.

    Refused when the folder would grow past `max_bytes`: nothing already stored is touched.
    """
    input_png = _png(model_input)
    record = {
        "format_version": FORMAT_VERSION,
        "character": character,
        "strokes": strokes,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    record_bytes = json.dumps(record).encode()
    folder.mkdir(parents=True, exist_ok=True)
    size = len(input_png) + len(drawing) + len(record_bytes)
    used = folder_bytes(folder)
    if used + size > max_bytes:
        raise CorrectionsFullError(
            f"the corrections folder is full ({used / 1e6:.1f} of {max_bytes / 1e6:g} MB): "
            "train on it and move it away, or raise serve.py corrections_max_mb"
        )
    name = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"
    for suffix, data in (
        (INPUT_SUFFIX, input_png),
        (DRAWING_SUFFIX, drawing),
        (RECORD_SUFFIX, record_bytes),  # last: the correction exists once this is there
    ):
        with replaced_atomically(folder / f"{name}{suffix}") as partial:
            partial.write_bytes(data)
    return name


def _fail(path: Path, problem: str) -> DataFilesError:
    return DataFilesError(
        f"{path}: {problem}: remove this correction (its .json, .png and .drawing.png) "
        "or the folder from data.extra"
    )


def _read_record(path: Path, class_names: tuple[str, ...]) -> str:
    try:
        record = parse_json(path.read_bytes(), MAX_RECORD_BYTES, MAX_STROKES_DEPTH)
    except JSONInputError as exc:
        raise _fail(path, f"not a correction record ({exc})") from None
    if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
        raise _fail(path, f"not a correction record of format {FORMAT_VERSION}")
    character = record.get("character")
    cls = class_of_character(character, class_names) if isinstance(character, str) else None
    if cls is None:
        raise _fail(path, f"character {str(character)[:20]!r} is not a class of data.split")
    return cls


def _read_input(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise _fail(path, "missing")
    if path.stat().st_size > MAX_INPUT_BYTES:
        raise _fail(path, f"larger than {MAX_INPUT_BYTES:,} bytes, not a 28x28 input")
    try:
        with Image.open(path) as image:
            if image.format != "PNG" or image.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise _fail(path, f"not a {IMAGE_SIZE}x{IMAGE_SIZE} PNG")
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise _fail(path, "not a readable PNG") from None
    return torch.from_numpy(pixels.copy()).unsqueeze(0)


def read_corrections(folder: str | Path, class_names: tuple[str, ...]) -> list[Correction]:
    """Every complete correction in `folder` (by name: the second it was saved), each checked."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataFilesError(
            f"data.extra: {folder} is not a folder: pass folders serve.py corrections_dir wrote"
        )
    corrections = []
    for record in sorted(folder.glob(f"*{RECORD_SUFFIX}")):
        character = _read_record(record, class_names)
        image = _read_input(record.with_suffix(INPUT_SUFFIX))
        corrections.append(Correction(image, character))
    return corrections
