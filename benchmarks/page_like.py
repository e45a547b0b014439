"""EMNIST's shapes redrawn as the drawing page draws them: the centre line of an EMNIST
character traced with the page's round pen, black on a white canvas (PNG bytes).

The page's pen is 1/14 of its 280-pixel canvas wide; drawn characters span most of the
canvas, so the pen is about a tenth of the character's longer side: 2.3-2.7 pixels after
preprocessing, against EMNIST's 2.0-4.4 (the issue's measurement of real page drawings).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from emnist_lightning.evaluation.font_set import skeleton

WORK = 112  # the EMNIST frame enlarged 4x, where the centre line is found
CANVAS = 280
PEN_SHARE = 0.10  # pen width / the character's longer side


def page_like_png(upright: np.ndarray, pen_share: float = PEN_SHARE) -> bytes:
    """An upright uint8 (28, 28) EMNIST image -> its page-like drawing as PNG bytes."""
    big = Image.fromarray(upright).resize((WORK, WORK), Image.Resampling.BICUBIC)
    line = skeleton(np.asarray(big) > 127)
    rows, cols = np.nonzero(line)
    if rows.size == 0:
        rows, cols = np.nonzero(np.asarray(big) > 127)
    scale = CANVAS / WORK
    span = max(np.ptp(rows), np.ptp(cols), 1) * scale
    radius = max(1.0, pen_share * span / 2)
    canvas = Image.new("L", (CANVAS, CANVAS), 255)
    draw = ImageDraw.Draw(canvas)
    for r, c in zip(rows * scale, cols * scale, strict=True):
        draw.ellipse((c - radius, r - radius, c + radius, r + radius), fill=0)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
