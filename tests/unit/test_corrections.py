"""The corrections folder: written whole or not at all, capped, and checked when read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from emnist_lightning.data.corrections import (
    CorrectionError,
    CorrectionsFullError,
    check_strokes,
    read_corrections,
    write_correction,
)
from emnist_lightning.data.labels import SPLITS, class_of_character
from emnist_lightning.errors import DataFilesError

CLASSES = SPLITS["balanced"].characters


def _input(value: float = 1.0) -> torch.Tensor:
    image = torch.zeros(1, 28, 28)
    image[0, 4:24, 12:16] = value
    return image


def _write(folder: Path, character: str = "O", max_bytes: int = 10**6) -> str:
    return write_correction(folder, _input(), b"drawing bytes", character, [[[1, 2]]], max_bytes)


def test_a_correction_is_read_back_as_the_input_and_its_class(tmp_path: Path) -> None:
    name = _write(tmp_path, "O")
    assert {p.name for p in tmp_path.iterdir()} == {
        f"{name}.png",
        f"{name}.drawing.png",
        f"{name}.json",
    }
    (correction,) = read_corrections(tmp_path, CLASSES)
    assert correction.character == "O"
    assert correction.image.dtype == torch.uint8 and correction.image.shape == (1, 28, 28)
    assert torch.equal(correction.image, (_input() * 255).to(torch.uint8))
    assert json.loads((tmp_path / f"{name}.json").read_text())["strokes"] == [[[1, 2]]]


def test_a_correction_without_its_record_was_never_completed_and_is_skipped(
    tmp_path: Path,
) -> None:
    name = _write(tmp_path)
    (tmp_path / f"{name}.json").unlink()  # as if killed before the last rename
    assert read_corrections(tmp_path, CLASSES) == []


def test_a_full_folder_refuses_and_keeps_what_it_holds(tmp_path: Path) -> None:
    _write(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CorrectionsFullError, match="corrections folder is full"):
        _write(tmp_path, max_bytes=sum(p.stat().st_size for p in tmp_path.iterdir()) + 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f, n: (f / f"{n}.json").write_text("{not json"), "not valid JSON"),
        (
            lambda f, n: (f / f"{n}.json").write_text('{"format_version": 1, "character": "?"}'),
            "is not a class",
        ),
        (lambda f, n: (f / f"{n}.png").unlink(), "missing"),
        (lambda f, n: (f / f"{n}.png").write_bytes(b"GIF89a"), "not a readable PNG"),
        (
            lambda f, n: (f / f"{n}.png").write_bytes((f / f"{n}.drawing.png").read_bytes()),
            "not a readable PNG",
        ),
    ],
)
def test_a_damaged_correction_is_refused_in_one_line(tmp_path: Path, damage, message) -> None:
    name = _write(tmp_path)
    damage(tmp_path, name)
    with pytest.raises(DataFilesError, match=message) as error:
        read_corrections(tmp_path, CLASSES)
    assert "\n" not in str(error.value) and "remove this correction" in str(error.value)


def test_a_28x28_png_of_another_size_is_refused(tmp_path: Path) -> None:
    from PIL import Image

    name = _write(tmp_path)
    Image.new("L", (32, 32)).save(tmp_path / f"{name}.png")
    with pytest.raises(DataFilesError, match="not a 28x28 PNG"):
        read_corrections(tmp_path, CLASSES)


def test_typed_characters_map_to_the_classes_emnist_merged() -> None:
    assert class_of_character("o", CLASSES) == "O"
    assert class_of_character("a", CLASSES) == "a"
    assert class_of_character("0", CLASSES) == "0"
    assert class_of_character("?", CLASSES) is None
    assert class_of_character("OO", CLASSES) is None


@pytest.mark.parametrize(
    "strokes", ["x", [[1, 2]], [[[1, "2"]]], [[[1, float("nan")]]], [[]] * 101]
)
def test_strokes_that_are_not_strokes_are_refused(strokes) -> None:
    with pytest.raises(CorrectionError):
        check_strokes(strokes)
