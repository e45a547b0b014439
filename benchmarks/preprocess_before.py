"""The preprocessing predict.py used before issue 11 (commit 5b35f4f), kept only so that
benchmarks/real_pens.py can measure "before" and "after" on the same model and images.

It cropped to the ink, centred it 24 of 28 pixels wide and shrank it with Lanczos, keeping the
pen as drawn: no binarising, no stroke-width normalisation, no EMNIST blur.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from emnist_lightning.inference.preprocess import (
    IMAGE_SIZE,
    INK_SPAN,
    light_ink_on_dark,
    load_grayscale,
    source_name,
)

INK_THRESHOLD = 0.35
BACKGROUND_CUTOFF = 0.15


def to_emnist_frame_before(pixels: np.ndarray, source: str = "image") -> torch.Tensor:
    ink = light_ink_on_dark(pixels, source)
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy()
    ink[ink < BACKGROUND_CUTOFF] = 0.0
    height, width = ink.shape
    canvas_side = int(round(max(height, width) * IMAGE_SIZE / INK_SPAN))
    canvas = np.zeros((canvas_side, canvas_side), dtype=np.float32)
    top, left = (canvas_side - height) // 2, (canvas_side - width) // 2
    canvas[top : top + height, left : left + width] = ink
    image = Image.fromarray((canvas * 255).astype(np.uint8), mode="L")
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).unsqueeze(0)


def load_character_before(source: str | Path) -> torch.Tensor:
    return to_emnist_frame_before(load_grayscale(source), source_name(source))
