"""Characters drawn with Pillow as a user's photo or drawing might look; handwriting fonts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from emnist_lightning.evaluation.font_set import HAND_FONTS, HandFont, find_fonts, font_packages


def render_character(
    char: str,
    path: Path,
    font_size: int = 90,
    canvas: tuple[int, int] = (220, 160),
    offset: tuple[int, int] = (30, 20),
    dark_on_light: bool = True,
    stroke: int = 4,
) -> Path:
    """Draw `char` off-centre on a larger canvas, black-on-white or white-on-black."""
    background, ink = (245, 10) if dark_on_light else (5, 250)
    image = Image.new("L", canvas, background)
    font = ImageFont.load_default(size=font_size)
    ImageDraw.Draw(image).text(
        offset, char, fill=ink, font=font, stroke_width=stroke, stroke_fill=ink
    )
    image.save(path)
    return path


def require_hand_fonts(names: tuple[str, ...] = ()) -> dict[HandFont, Path]:
    """The installed handwriting fonts (only `names`, by file, if given); skips outside CI
    when they are missing, fails in CI, whose .ci/run installs them."""
    wanted = [f for f in HAND_FONTS if not names or f.file in names]
    found = find_fonts(wanted)
    if len(found) < len(wanted):
        missing = font_packages([f for f in wanted if f not in found])
        message = f"handwriting fonts missing: apt-get install {' '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found
