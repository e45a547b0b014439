"""Turning a user's image of one character into what the model saw in training.

EMNIST (Cohen et al. 2017) took NIST's binary 128x128 scans of handwriting, blurred them
(Gaussian, sigma 1), cropped them to the ink, centred that box in a square that keeps its
aspect ratio, downsampled it to 28x28 with bicubic interpolation and scaled the brightest pixel
to 255: light ink on dark, the character spanning about 24 of 28 pixels, its strokes 2-3 pixels
wide. A phone photo of black pen on white paper or a thin white-on-black drawing gets the same
treatment here, plus one step EMNIST did not need: the pen is made as wide as EMNIST's pens,
because people draw thinner and cleaner than NIST's scanned forms.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from emnist_lightning.errors import ImageInputError

IMAGE_SIZE = 28
# The ink box's longer side spans this many of the 28 pixels (EMNIST: median 24 at >2% ink).
INK_SPAN = 24
# Ink is any pixel brighter than this, after inversion and contrast stretch (0..1); NIST's
# scans were binary, so the character is first reduced to ink or paper at this level.
INK_THRESHOLD = 0.5
# Strokes are measured and re-drawn with the character's longer side at (at least) this many
# pixels, about NIST's 128-pixel frame.
WORK_SIDE = 112
# EMNIST's pens: percentiles of its stroke widths, as fractions of the character's longer
# side, calibrated so that the 28x28 result has EMNIST's widths (twice the ink over the
# outline: 2.0 to 4.4 pixels from the 5th to the 95th percentile on the proxy training split,
# median 2.9). The 5th and 95th were set on the font set (benchmarks/emnist_look.py), the
# others on page-like drawings of validation shapes (benchmarks/pen_width_views.py calibrate).
EMNIST_PEN_WIDTHS = {
    5: 0.072,
    10: 0.086,
    20: 0.098,
    30: 0.108,
    50: 0.123,
    70: 0.140,
    80: 0.152,
    90: 0.169,
    95: 0.185,
}
STROKE_RANGE = (EMNIST_PEN_WIDTHS[5], EMNIST_PEN_WIDTHS[95])
# Pen-width views (pen_width_views): redrawn pens thinner than VIEWS_BELOW read at the pens
# of these percentiles, the model's probabilities averaged. Empty: on the seed-1 font set and
# page-like drawings of validation shapes no choice helped both the quick and the default
# recipe's model (docs/using-a-model.md "Reading real pens"), so one view, as drawn or
# clamped to STROKE_RANGE, is read.
VIEW_PERCENTILES: tuple[int, ...] = ()
VIEW_WIDTHS = tuple(EMNIST_PEN_WIDTHS[p] for p in VIEW_PERCENTILES)
VIEWS_BELOW = math.inf
# EMNIST's blur: sigma 1 pixel of NIST's 128-pixel frame, in which a character's longer side
# is typically about 64 pixels; at this value the 28x28 result has EMNIST's share of faint,
# half-bright and saturated ink pixels.
BLUR_SIGMA = 1.0 / 64
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}

ImageSource = str | os.PathLike | BinaryIO


def source_name(source: ImageSource) -> str:
    """How error messages name an image: its path, or "image" for an open file object."""
    return os.fspath(source) if isinstance(source, str | os.PathLike) else "image"


def _scaled_to_unit(image: Image.Image) -> np.ndarray:
    """32-bit float and 16/32-bit integer images: their own range mapped to [0, 1].

    Pillow's convert("L") clips these to 0..255, so a float TIFF in [0, 1] reads as black
    and a 16-bit PNG as white.
    """
    values = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.float32)
    low, high = float(values[finite].min()), float(values[finite].max())
    values = np.where(finite, values, low)
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def _gray(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode == "F" or image.mode.startswith("I"):
        return _scaled_to_unit(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)  # transparency counts as paper
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def load_grayscale(source: ImageSource) -> np.ndarray:
    """Read any image Pillow can (a path or a binary file object) as floats in [0, 1]."""
    name = source_name(source)
    if isinstance(source, (str, Path)) and Path(source).exists() and not Path(source).is_file():
        raise ImageInputError(f"{name} is not a regular file: pass image files or folders")
    try:
        with warnings.catch_warnings():
            # Over Image.MAX_IMAGE_PIXELS Pillow only warns (and refuses at twice that):
            # refuse both, so one huge file cannot exhaust the memory of a batch or a server.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                # The same check again: warning filters are process-wide, and a server
                # reads images in threads, where another thread may restore them meanwhile.
                limit = Image.MAX_IMAGE_PIXELS
                if limit and image.width * image.height > limit:
                    raise Image.DecompressionBombWarning(f"{image.width}x{image.height}")
                return _gray(image)
    except FileNotFoundError:
        raise ImageInputError(f"{name}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(
            f"{name}: too many pixels (over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,}, "
            "which guards against decompression bombs): crop or shrink it to the character"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageInputError(
            f"{name}: not an image Pillow can read ({type(exc).__name__})"
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


def light_ink_on_dark(pixels: np.ndarray, source: str = "image") -> np.ndarray:
    """Invert dark-on-light (decided by the border: that is the paper) and stretch to [0, 1]."""
    background = float(np.median(_border(pixels)))
    ink = 1.0 - pixels if background > 0.5 else pixels
    paper = min(background, 1.0 - background)
    contrast = float(ink.max()) - paper
    if contrast < 0.1:
        raise ImageInputError(f"{source}: no ink found (the image is blank or has no contrast)")
    return np.clip((ink - paper) / contrast, 0.0, 1.0)


def _ink_mask(ink: np.ndarray, source: str) -> torch.Tensor:
    """The character as a binary (1, 1, H, W) mask, cropped, its longer side >= WORK_SIDE.

    Large images are shrunk by max-pooling, which keeps even hairline strokes; small ones are
    enlarged before thresholding, so strokes keep their shape.
    """
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    if rows.size == 0:
        raise ImageInputError(f"{source}: no ink found")
    crop = torch.from_numpy(
        np.ascontiguousarray(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    )
    crop = crop[None, None]
    side = max(crop.shape[-2:])
    if side < WORK_SIDE:
        scale = WORK_SIDE / side
        size = [max(1, round(n * scale)) for n in crop.shape[-2:]]
        crop = F.interpolate(crop, size=size, mode="bilinear", align_corners=False)
        return (crop > INK_THRESHOLD).float()
    mask = (crop > INK_THRESHOLD).float()
    factor = side // WORK_SIDE
    return F.max_pool2d(mask, factor, ceil_mode=True) if factor > 1 else mask


def stroke_width(image: torch.Tensor, smoothing: float = 0.7) -> float:
    """Mean stroke width in pixels of a (1, 1, H, W) image: twice the ink over its outline.

    A stroke of width w and length L has area w*L and an outline of about 2*L. The outline is
    the total gradient, which measures slanted edges as well as straight ones; a binary mask
    is smoothed first (`smoothing` sigma), an already smooth 28x28 frame need not be.
    """
    image = F.pad(image, [math.ceil(3 * smoothing) + 1] * 4)  # edges at the border count too
    smooth = _gaussian_blur(image, smoothing) if smoothing > 0 else image
    dy = smooth[..., 1:, :-1] - smooth[..., :-1, :-1]
    dx = smooth[..., :-1, 1:] - smooth[..., :-1, :-1]
    outline = float(torch.sqrt(dx**2 + dy**2).sum())
    return 2.0 * float(image.sum()) / max(outline, 1e-6)


def _disk(radius: float) -> torch.Tensor:
    reach = math.floor(radius)
    offsets = torch.arange(-reach, reach + 1, dtype=torch.float32)
    inside = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
    return inside.float()[None, None]


def _dilate(mask: torch.Tensor, radius: float) -> torch.Tensor:
    disk = _disk(radius)
    reach = disk.shape[-1] // 2
    return (F.conv2d(F.pad(mask, [reach] * 4), disk) > 0.5).float()


def with_stroke_width(mask: torch.Tensor, target: float) -> torch.Tensor:
    """The mask redrawn with strokes `target` of its longer side wide (dilated or eroded with
    a disk). The mask gets a margin so that thickened strokes are not cut."""
    side = max(mask.shape[-2:])
    width = stroke_width(mask) / side
    if target == width:
        return mask
    # Dilating by r widens strokes by 2r and the character by 2r too: solve for the width
    # that is `target` of the new longer side.
    radius = (target - width) * side / (2 * (1 - target))
    # A pixel is reached when its centre lies within radius + 0.5 of an ink pixel's centre:
    # the stroke's edge, half a pixel beyond that centre, moves out by `radius`.
    if radius > 0:
        margin = math.ceil(radius) + 1
        return _dilate(F.pad(mask, [margin] * 4), radius + 0.5)
    thinner = 1.0 - _dilate(1.0 - mask, -radius + 0.5)
    return thinner if thinner.any() else mask  # a pen too thick to thin: keep it as drawn


def normalise_stroke_width(mask: torch.Tensor) -> torch.Tensor:
    """Redraw a pen thinner or thicker than any EMNIST writer's at the nearest EMNIST width.

    Widths (relative to the longer side) inside STROKE_RANGE are left as drawn: the model
    learnt that variety. Outside it, the pen is set to the nearer bound.
    """
    width = stroke_width(mask) / max(mask.shape[-2:])
    target = min(max(width, STROKE_RANGE[0]), STROKE_RANGE[1])
    return mask if target == width else with_stroke_width(mask, target)


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    reach = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-reach, reach + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(image, [reach] * 4)
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1))


def _centred_in_frame(image: torch.Tensor) -> np.ndarray:
    """Crop to the ink, centre its box in a square so that its longer side spans INK_SPAN."""
    pixels = image[0, 0]
    rows = torch.nonzero(pixels.amax(dim=1) > 0.02).flatten()
    cols = torch.nonzero(pixels.amax(dim=0) > 0.02).flatten()
    pixels = pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = pixels.shape
    canvas_side = max(IMAGE_SIZE, round(max(height, width) * IMAGE_SIZE / INK_SPAN))
    canvas = np.zeros((canvas_side, canvas_side), dtype=np.float32)
    top, left = (canvas_side - height) // 2, (canvas_side - width) // 2
    canvas[top : top + height, left : left + width] = pixels.numpy()
    return canvas


# An image already in EMNIST's form: 28x28, dark border, the ink's box (pixels > 0.02) centred
# within EMNIST_CENTRE_TOLERANCE pixels and EMNIST_SPAN pixels long. Every image of the proxy
# test split is (box centre off by at most 0.5 pixels, span 20 to 28).
EMNIST_CENTRE_TOLERANCE = 1.0
EMNIST_SPAN = (20, IMAGE_SIZE)
EMNIST_BORDER = 0.1


def in_emnist_form(pixels: np.ndarray) -> bool:
    """Whether an image is already what EMNIST's pipeline makes: redrawing it again would
    only thicken and blur EMNIST's own strokes."""
    if (
        pixels.shape != (IMAGE_SIZE, IMAGE_SIZE)
        or float(np.median(_border(pixels))) > EMNIST_BORDER
    ):
        return False
    ink = pixels > 0.02 * max(float(pixels.max()), 1e-6)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return False
    span = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    centre = (IMAGE_SIZE - 1) / 2
    off = max(abs((rows[0] + rows[-1]) / 2 - centre), abs((cols[0] + cols[-1]) / 2 - centre))
    return EMNIST_SPAN[0] <= span <= EMNIST_SPAN[1] and off <= EMNIST_CENTRE_TOLERANCE


def to_emnist_frame(pixels: np.ndarray, source: str = "image") -> torch.Tensor:
    """(H, W) grayscale in [0, 1] -> (1, 28, 28) light-on-dark, EMNIST's pen, centred, upright.

    An image already in EMNIST's form passes through, its brightest pixel scaled to 1."""
    if in_emnist_form(pixels) and float(pixels.max()) >= 0.1:
        return torch.from_numpy((pixels / float(pixels.max())).astype(np.float32)).unsqueeze(0)
    return redrawn_frame(pixels, source)


def redrawn_frame(pixels: np.ndarray, source: str = "image") -> torch.Tensor:
    """Any image redrawn as EMNIST was made: binarised, cropped, EMNIST's pen, blurred, centred."""
    mask = _ink_mask(light_ink_on_dark(pixels, source), source)
    return _emnist_frame(normalise_stroke_width(mask))


def _emnist_frame(mask: torch.Tensor) -> torch.Tensor:
    """A binary mask at its final pen -> (1, 28, 28): EMNIST's blur, centring and bicubic."""
    blurred = _gaussian_blur(mask, BLUR_SIGMA * max(mask.shape[-2:]))
    frame = Image.fromarray(_centred_in_frame(blurred), mode="F")
    small = np.asarray(frame.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC))
    small = np.clip(small, 0.0, None)
    small = small / max(float(small.max()), 1e-6)  # EMNIST scaled its brightest pixel to 255
    return torch.from_numpy(small.astype(np.float32)).unsqueeze(0)


def pen_width_views(
    pixels: np.ndarray,
    source: str = "image",
    widths: tuple[float, ...] | None = None,
    below: float | None = None,
) -> torch.Tensor:
    """(H, W) grayscale in [0, 1] -> (V, 1, 28, 28): the character at several EMNIST pens.

    One pen width is a guess at which EMNIST writer drew it; a redrawn pen thinner than
    `below` (of its longer side; default VIEWS_BELOW) is drawn once per width in `widths`
    (default VIEW_WIDTHS) and the model's probabilities averaged over them
    (`predictors.view_probabilities`). EMNIST-form input, other pens and fewer than two widths
    give one view, to_emnist_frame's. The middle view is the one to show or store.
    """
    widths = VIEW_WIDTHS if widths is None else widths
    below = VIEWS_BELOW if below is None else below
    if in_emnist_form(pixels) and float(pixels.max()) >= 0.1:
        return to_emnist_frame(pixels, source)[None]
    mask = _ink_mask(light_ink_on_dark(pixels, source), source)
    if len(widths) < 2 or stroke_width(mask) / max(mask.shape[-2:]) >= below:
        return _emnist_frame(normalise_stroke_width(mask))[None]
    return torch.stack([_emnist_frame(with_stroke_width(mask, w)) for w in widths])


def central_view(views: torch.Tensor) -> torch.Tensor:
    """The (1, 28, 28) view to show a user or store with a correction: the middle pen's."""
    return views[len(views) // 2]


def load_views(source: ImageSource) -> torch.Tensor:
    """Read one image as the model's inputs at EMNIST's pens: (V, 1, 28, 28), see
    pen_width_views."""
    return pen_width_views(load_grayscale(source), source=source_name(source))


def load_character(source: ImageSource) -> torch.Tensor:
    """Read one image (a path or a binary file object) as the input to show or store:
    (1, 28, 28) in [0, 1], the central one of its pen-width views."""
    return central_view(load_views(source))


def expand_image_paths(entries: list[str]) -> list[Path]:
    """Files and folders (their image files, sorted) -> the list of files to predict."""
    paths: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            # Regular files only: opening a FIFO (or a device) named like an image would hang.
            paths.extend(
                sorted(
                    p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                )
            )
        else:
            paths.append(path)
    return paths
