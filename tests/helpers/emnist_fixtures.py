"""Tiny EMNIST-format IDX files, so tests run torchvision's real reader with no download."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from emnist_lightning.data.idx_files import expected_files, raw_folder
from emnist_lightning.data.labels import split_info


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (big-endian header, as EMNIST ships it)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def class_glyph(cls: int, rng: np.random.Generator) -> np.ndarray:
    """An upright 28x28 image that is easy to tell apart per class: a bar at a class-dependent
    position and angle, plus noise, so a tiny model learns it in a few steps."""
    image = rng.integers(0, 40, size=(28, 28)).astype(np.float32)
    row = 3 + (cls * 5) % 22
    col = 3 + (cls * 11) % 22
    image[row : row + 3, 2:26] += 200  # horizontal bar
    image[2:26, col : col + 3] += 150  # vertical bar
    image[2:6, 2:6] += 255 * (cls % 2)  # corner mark: makes the image non-symmetric
    return np.clip(image, 0, 255).astype(np.uint8)


def write_emnist_fixture(
    data_dir: Path,
    split: str = "balanced",
    train_per_class: int = 12,
    test_per_class: int = 4,
    seed: int = 0,
) -> Path:
    """Write train and test IDX files for `split` under data_dir/EMNIST/raw, stored transposed
    as EMNIST stores them. Returns data_dir."""
    info = split_info(split)
    rng = np.random.default_rng(seed)
    folder = raw_folder(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for train, per_class in ((True, train_per_class), (False, test_per_class)):
        labels = np.repeat(np.arange(info.num_classes), per_class)
        rng.shuffle(labels)
        upright = np.stack([class_glyph(int(c), rng) for c in labels])
        stored = upright.transpose(0, 2, 1)  # EMNIST's raw orientation
        images_name, labels_name = expected_files(split, train)
        write_idx(folder / images_name, stored)
        write_idx(folder / labels_name, (labels + info.label_offset).astype(np.uint8))
    return data_dir
