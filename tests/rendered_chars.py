"""Characters drawn with Pillow as a user's photo or drawing might look."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


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
