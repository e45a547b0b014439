"""Checks EMNIST's raw IDX files before torchvision reads them, so problems get clear errors."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from emnist_lightning.data.labels import split_info
from emnist_lightning.errors import DataFilesError

_UINT8 = 0x08


def raw_folder(data_dir: str | Path) -> Path:
    """Where torchvision keeps EMNIST's extracted files under `data_dir`."""
    return Path(data_dir) / "EMNIST" / "raw"


def expected_files(split: str, train: bool) -> tuple[str, str]:
    """Image and label file names for one split and stage, as torchvision names them."""
    stage = "train" if train else "test"
    return (
        f"emnist-{split}-{stage}-images-idx3-ubyte",
        f"emnist-{split}-{stage}-labels-idx1-ubyte",
    )


def missing_files(data_dir: str | Path, split: str) -> list[Path]:
    """The raw files of `split` (train and test) that are not on disk."""
    folder = raw_folder(data_dir)
    names = expected_files(split, True) + expected_files(split, False)
    return [folder / name for name in names if not (folder / name).is_file()]


def read_idx_shape(path: Path, ndim: int) -> tuple[int, ...]:
    """Read and check an IDX header; the file must hold exactly the bytes it declares."""
    try:
        with path.open("rb") as f:
            header = f.read(4 + 4 * ndim)
    except OSError as exc:
        raise DataFilesError(f"cannot read {path}: {exc.strerror}; check its permissions") from None
    fix = "delete it and download again (data.download=true) or copy a good copy there"
    if len(header) < 4 + 4 * ndim:
        raise DataFilesError(f"{path} is truncated (no complete IDX header): {fix}")
    zero, dtype, file_ndim = struct.unpack(">HBB", header[:4])
    if zero != 0 or dtype != _UINT8 or file_ndim != ndim:
        raise DataFilesError(
            f"{path} is not a uint8 IDX file with {ndim} dimension(s) "
            f"(magic {header[:4].hex()}): {fix}"
        )
    shape = struct.unpack(f">{ndim}I", header[4:])
    expected_size = len(header) + math.prod(shape)
    actual_size = path.stat().st_size
    if actual_size != expected_size:
        raise DataFilesError(
            f"{path} is corrupt: its header declares {expected_size:,} bytes but it has "
            f"{actual_size:,}: {fix}"
        )
    return shape


def check_split_files(data_dir: str | Path, split: str, train: bool) -> int:
    """Check one stage's image and label files agree; returns the number of samples."""
    folder = raw_folder(data_dir)
    images_name, labels_name = expected_files(split, train)
    images_shape = read_idx_shape(folder / images_name, ndim=3)
    (num_labels,) = read_idx_shape(folder / labels_name, ndim=1)
    if images_shape[0] != num_labels:
        raise DataFilesError(
            f"{folder / images_name} holds {images_shape[0]:,} images but "
            f"{folder / labels_name} holds {num_labels:,} labels: they come from different "
            "downloads; replace both"
        )
    if num_labels == 0:
        raise DataFilesError(
            f"{folder / images_name} holds no images: replace it (and {labels_name}) with the "
            "EMNIST files"
        )
    if images_shape[1:] != (28, 28):
        raise DataFilesError(
            f"{folder / images_name} holds {images_shape[1]}x{images_shape[2]} images, "
            "EMNIST's are 28x28: replace it with the EMNIST file"
        )
    return num_labels


def check_label_range(data_dir: str | Path, split: str, train: bool) -> None:
    """Every label of one stage must name a class of the split (checked before training)."""
    info = split_info(split)
    path = raw_folder(data_dir) / expected_files(split, train)[1]
    (count,) = read_idx_shape(path, ndim=1)
    labels = np.fromfile(path, dtype=np.uint8, offset=8, count=count).astype(np.int64)
    labels -= info.label_offset
    bad = labels[(labels < 0) | (labels >= info.num_classes)]
    if bad.size:
        raise DataFilesError(
            f"{path} has {bad.size:,} label(s) outside split '{split}' (e.g. raw label "
            f"{int(bad[0]) + info.label_offset}; valid: {info.label_offset} to "
            f"{info.num_classes - 1 + info.label_offset}): use the label file of this split"
        )


def missing_files_message(data_dir: str | Path, split: str) -> str:
    """One line naming the folder, the files it lacks and the ways to provide them."""
    missing = missing_files(data_dir, split)
    names = ", ".join(p.name for p in missing)
    return (
        f"EMNIST '{split}' files missing in {raw_folder(data_dir)}: {names}. "
        "Set data.download=true to fetch them with torchvision, or copy the extracted "
        "EMNIST IDX files there (data.data_dir must be the folder that holds EMNIST/raw)"
    )
