from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rendered_chars import render_character

from emnist_lightning.preprocess import (
    ImageInputError,
    expand_image_paths,
    load_character,
    to_emnist_frame,
)


def test_dark_on_light_and_light_on_dark_give_the_same_frame(tmp_path: Path) -> None:
    black_on_white = load_character(render_character("A", tmp_path / "a.png", dark_on_light=True))
    white_on_black = load_character(render_character("A", tmp_path / "b.png", dark_on_light=False))
    assert black_on_white.shape == (1, 28, 28)
    assert torch.allclose(black_on_white, white_on_black, atol=0.08)
    assert black_on_white[0, 0].max() < 0.05  # background is dark after inversion
    assert black_on_white.max() > 0.9  # ink is light


def test_ink_is_cropped_centred_and_fills_24_of_28_pixels(tmp_path: Path) -> None:
    small = load_character(
        render_character("T", tmp_path / "s.png", font_size=40, offset=(5, 5), stroke=2)
    )
    large = load_character(
        render_character(
            "T", tmp_path / "l.png", font_size=120, offset=(60, 2), canvas=(300, 200), stroke=6
        )
    )
    for frame in (small, large):
        rows = torch.nonzero(frame[0].amax(dim=1) > 0.3).flatten()
        cols = torch.nonzero(frame[0].amax(dim=0) > 0.3).flatten()
        assert 20 <= int(rows[-1] - rows[0]) + 1 <= 25  # the longer side spans ~24 pixels
        centre_row = (rows[0] + rows[-1]) / 2
        centre_col = (cols[0] + cols[-1]) / 2
        assert abs(float(centre_row) - 13.5) <= 1.5 and abs(float(centre_col) - 13.5) <= 1.5
    # Same glyph at a third of the size, anywhere on the canvas: nearly the same input.
    assert (small - large).abs().mean() < 0.05


def test_image_stays_upright_never_transposed() -> None:
    pixels = np.ones((100, 100), dtype=np.float32)
    pixels[10:20, 10:90] = 0.0  # a dark bar across the top ...
    pixels[10:90, 45:55] = 0.0  # ... on a stem: a "T"
    frame = to_emnist_frame(pixels)[0]
    assert frame[3:7].mean() > frame[:, 3:7].mean() + 0.2  # the bar is a row, not a column


def test_transparent_background_counts_as_paper(tmp_path: Path) -> None:
    image = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (25, 5, 35, 55))  # an opaque black "1" on transparency
    image.save(tmp_path / "one.png")
    frame = load_character(tmp_path / "one.png")
    assert frame[0, :, 13:15].mean() > 0.5 and frame[0, :, :5].max() < 0.05


def test_blank_image_is_refused_with_one_line(tmp_path: Path) -> None:
    Image.new("L", (50, 50), 255).save(tmp_path / "blank.png")
    with pytest.raises(ImageInputError, match="blank.png: no ink found"):
        load_character(tmp_path / "blank.png")


def test_unreadable_and_missing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageInputError, match="notes.png: not an image Pillow can read"):
        load_character(tmp_path / "notes.png")
    with pytest.raises(ImageInputError, match="missing.png: no such file"):
        load_character(tmp_path / "missing.png")


def test_folders_expand_to_their_image_files(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "readme.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in expand_image_paths([str(tmp_path)])] == ["a.jpg", "b.png"]
