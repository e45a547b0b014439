"""The held-back font-render set: what it holds, that it is reproducible, that it reads."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.rendered_chars import require_hand_fonts
from PIL import Image

from emnist_lightning.data.labels import split_info
from emnist_lightning.evaluation.font_set import (
    PENS,
    POLARITIES,
    read_font_set,
    skeleton,
    write_font_set,
)
from emnist_lightning.inference.preprocess import load_character, stroke_width

CAPS_ONLY, WITH_LOWERCASE = "Humor-Sans.ttf", "Breip.ttf"


@pytest.mark.slow
def test_each_font_draws_its_classes_with_both_pens_and_polarities(tmp_path: Path) -> None:
    fonts = require_hand_fonts((CAPS_ONLY, WITH_LOWERCASE))
    samples = read_font_set(write_font_set(tmp_path, fonts))
    per_font = {font.name: [s for s in samples if s.font == font.name] for font in fonts}
    balanced = set(split_info("balanced").characters)
    caps = {s.label for s in per_font["Humor-Sans"]}
    assert caps == set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # no small capitals as "a"
    assert {s.label for s in per_font["Breip"]} == balanced
    # Merged lowercase letters are drawn too and filed under their capitals, as EMNIST did.
    assert Counter(s.label for s in per_font["Breip"])["C"] == 2 * len(PENS) * len(POLARITIES)
    assert {(s.pen, s.polarity) for s in samples} == {(p, q) for p in PENS for q in POLARITIES}
    for sample in samples[::7]:
        pixels = np.asarray(Image.open(sample.path).convert("L"), dtype=np.float32)
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        assert (np.median(border) > 128) == (sample.polarity == "dark_on_light")
        assert load_character(sample.path).max() == 1.0  # every image is readable


def test_the_same_seed_renders_the_same_set(tmp_path: Path) -> None:
    fonts = require_hand_fonts((CAPS_ONLY,))
    first = read_font_set(write_font_set(tmp_path / "a", fonts, split="digits"))
    again = read_font_set(write_font_set(tmp_path / "b", fonts, split="digits"))
    other = read_font_set(write_font_set(tmp_path / "c", fonts, split="digits", seed=1))
    assert [s.path.name for s in first] == [s.path.name for s in again]
    assert all(
        a.path.read_bytes() == b.path.read_bytes() for a, b in zip(first, again, strict=True)
    )
    assert (
        sum(a.path.read_bytes() != c.path.read_bytes() for a, c in zip(first, other, strict=True))
        > 30
    )


def test_skeleton_of_a_thick_stroke_is_its_one_pixel_centre_line() -> None:
    bar = np.zeros((40, 120), dtype=bool)
    bar[12:27, 10:110] = True  # 15 pixels thick
    line = skeleton(bar)
    rows, cols = np.nonzero(line)
    assert set(rows) == {19}  # the middle row
    assert cols.max() - cols.min() > 80  # most of the length kept


def _pen_widths(sample_paths: list[Path]) -> list[float]:
    """Stroke width over ink height of dark-on-light renders, on their ink (paper < ink)."""
    widths = []
    for path in sample_paths:
        pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        ink = pixels < (np.median(pixels) + pixels.min()) / 2
        rows = np.flatnonzero(ink.any(axis=1))
        mask = torch.from_numpy(ink.astype(np.float32))[None, None]
        widths.append(stroke_width(mask) / (rows[-1] - rows[0] + 1))
    return widths


@pytest.mark.parametrize("font", [CAPS_ONLY, WITH_LOWERCASE])
def test_fine_pen_draws_the_glyph_with_a_thin_even_line(tmp_path: Path, font: str) -> None:
    fonts = require_hand_fonts((font,))
    samples = read_font_set(write_font_set(tmp_path, fonts, split="digits"))
    light = [s for s in samples if s.polarity == "dark_on_light"]
    fine = _pen_widths([s.path for s in light if s.pen == "fine"])
    own = _pen_widths([s.path for s in light if s.pen == "font"])
    # Drawn 2.5-5% of the glyph's height wide, then blurred like a photo: thinner than any
    # EMNIST writer's pen (7-18% of the character's longer side) for most characters.
    assert 0.03 <= float(np.median(fine)) <= 0.09, fine
    if font == CAPS_ONLY:  # a bold marker font: the fine pen is clearly thinner
        assert np.median(fine) < 0.6 * np.median(own)
