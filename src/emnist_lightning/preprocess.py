"""Turning a user's image of one character into what the model saw in training.

EMNIST was made by cropping each NIST character to its ink, centring it in a square that
keeps its aspect ratio with a 2-pixel border, and downsampling to 28x28, light ink on dark.
A phone photo of black pen on white paper or a white-on-black drawing gets the same treatment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError

IMAGE_SIZE = 28
# EMNIST's character spans 24 of 28 pixels (2-pixel border on each side).
INK_SPAN = 24
# Ink is any pixel at least this bright (after inversion and contrast stretch, 0..1).
INK_THRESHOLD = 0.35
# Residual background below this brightness is cleared before resizing.
BACKGROUND_CUTOFF = 0.15
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


class ImageInputError(UserError):
    """An image that cannot be read or holds no character."""


def load_grayscale(path: str | Path) -> np.ndarray:
    """Read any image Pillow can, flatten transparency onto white, return floats in [0, 1]."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, rgba)
            gray = image.convert("L")
            return np.asarray(gray, dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise ImageInputError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageInputError(
            f"{path}: not an image Pillow can read ({type(exc).__name__})"
        ) from None


def _border(pixels: np.ndarray) -> np.ndarray:
    band = max(1, min(pixels.shape) // 20)
    return np.concatenate(
        [
            pixels[:band].ravel(),
            pixels[-band:].ravel(),
            pixels[:, :band].ravel(),
            pixels[:, -band:].ravel(),
        ]
    )


def to_emnist_frame(pixels: np.ndarray, source: str = "image") -> torch.Tensor:
    """(H, W) grayscale in [0, 1] -> (1, 28, 28) light-on-dark, ink-cropped, centred, upright."""
    background = float(np.median(_border(pixels)))
    ink = 1.0 - pixels if background > 0.5 else pixels.copy()
    ink_background = 1.0 - background if background > 0.5 else background
    contrast = float(ink.max()) - ink_background
    if contrast < 0.1:
        raise ImageInputError(f"{source}: no ink found (the image is blank or has no contrast)")
    ink = np.clip((ink - ink_background) / contrast, 0.0, 1.0)
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    if rows.size == 0:
        raise ImageInputError(f"{source}: no ink found")
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    ink[ink < BACKGROUND_CUTOFF] = 0.0
    height, width = ink.shape
    side = max(height, width)
    canvas_side = int(round(side * IMAGE_SIZE / INK_SPAN))
    canvas = np.zeros((canvas_side, canvas_side), dtype=np.float32)
    top, left = (canvas_side - height) // 2, (canvas_side - width) // 2
    canvas[top : top + height, left : left + width] = ink
    image = Image.fromarray((canvas * 255).astype(np.uint8), mode="L")
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).unsqueeze(0)


def load_character(path: str | Path) -> torch.Tensor:
    """Read one image file as the model's input: (1, 28, 28) floats in [0, 1]."""
    return to_emnist_frame(load_grayscale(path), source=str(path))


def expand_image_paths(entries: list[str]) -> list[Path]:
    """Files and folders (their image files, sorted) -> the list of files to predict."""
    paths: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            paths.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            paths.append(path)
    return paths
