"""A held-back "real pens" set: characters rendered from handwriting-like fonts, photo-like.

EMNIST's test split only says how well a model reads EMNIST. What users draw or photograph is
cleaner and thinner, so this set renders every class of a split in handwriting fonts from
Debian's font packages, black-on-white and white-on-black, off-centre, slightly rotated, with
uneven light, camera blur, sensor noise and JPEG compression. It is never used for training;
`score_font_set` reads it through `preprocess.load_views`, the path real images take.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from emnist_lightning.data.labels import split_info
from emnist_lightning.errors import ImageInputError
from emnist_lightning.inference.predictors import Predictor, view_probabilities
from emnist_lightning.inference.preprocess import load_views

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
LABELS_CSV = "labels.csv"
POLARITIES = ("dark_on_light", "light_on_dark")
# "font": the font's own pen; "fine": the glyph's centre line drawn with a pen 2.5-5% of its
# height wide, as a fine-liner on paper or a thin stylus on a large canvas draws.
PENS = ("font", "fine")
FINE_PEN = (0.025, 0.05)


@dataclass(frozen=True)
class HandFont:
    """One font file, the Debian package that ships it, and whether it has real lowercase."""

    file: str
    package: str
    # Caps-only fonts draw lowercase codepoints as small capitals: labelling those "a" would
    # score the model against the wrong answer, so only their digits and capitals are used.
    lowercase: bool

    @property
    def name(self) -> str:
        return Path(self.file).stem


# Chosen by eye from `apt-cache search font | grep -i -E "hand|script|comic|cursive"`: fonts
# that look written by hand with separate letters (connected scripts are not EMNIST's task).
HAND_FONTS = (
    HandFont("BecauseWeBuild-Regular.otf", "fonts-bwht", lowercase=False),
    HandFont("BecauseWeConnect-Regular.otf", "fonts-bwht", lowercase=False),
    HandFont("BecauseWeCreate-Regular.otf", "fonts-bwht", lowercase=False),
    HandFont("BecauseWeLearn-Regular.otf", "fonts-bwht", lowercase=False),
    HandFont("BecauseWeMentor-Regular.otf", "fonts-bwht", lowercase=False),
    HandFont("BecauseWeOrganize-Regular.otf", "fonts-bwht", lowercase=False),
    HandFont("ComicNeue-Regular.otf", "fonts-comic-neue", lowercase=True),
    HandFont("Breip.ttf", "fonts-breip", lowercase=True),
    HandFont("dkg.ttf", "fonts-dkg-handwriting", lowercase=True),
    HandFont("Humor-Sans.ttf", "fonts-humor-sans", lowercase=False),
    HandFont("Kristi.ttf", "fonts-kristi", lowercase=True),
    HandFont("Delphine.ttf", "fonts-sjfonts", lowercase=True),
    HandFont("SteveHand.ttf", "fonts-sjfonts", lowercase=True),
    HandFont("TomsonTalks.ttf", "fonts-tomsontalks", lowercase=False),
)


def font_packages(fonts: Iterable[HandFont] = HAND_FONTS) -> list[str]:
    """The Debian packages that provide `fonts`, for apt-get install."""
    return sorted({font.package for font in fonts})


def find_fonts(
    fonts: Iterable[HandFont] = HAND_FONTS, dirs: Iterable[Path] = FONT_DIRS
) -> dict[HandFont, Path]:
    """The installed ones among `fonts`, by file name under the usual font folders."""
    by_name: dict[str, Path] = {}
    for folder in dirs:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                by_name.setdefault(path.name, path)
    return {font: by_name[font.file] for font in fonts if font.file in by_name}


def drawn_characters(font: HandFont, split: str = "balanced") -> list[tuple[str, str]]:
    """(character to draw, class it belongs to) for every class of `split` the font can draw.

    Merged splits (balanced, bymerge) file lowercase c, i, j ... under their capitals, as
    EMNIST did, so a font with lowercase also draws those, labelled with the capital.
    """
    classes = split_info(split).characters
    pairs: list[tuple[str, str]] = []
    for label in classes:
        if label.islower() and not font.lowercase:
            continue
        pairs.append((label, label))
        lower = label.lower()
        if label.isupper() and font.lowercase and lower not in classes:
            pairs.append((lower, label))
    return pairs


def _rng(seed: int, *parts: str) -> np.random.Generator:
    """A generator per image, so adding a font or a character never changes the others."""
    return np.random.default_rng([seed, zlib.crc32(":".join(parts).encode())])


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang and Suen's (1984) thinning: the 1-pixel centre line of a boolean mask."""
    image = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = image
            # Neighbours P2..P9, clockwise from north.
            n = [
                p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:],
                p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2],
            ]  # fmt: skip
            count = sum(n)
            turns = sum((n[i] == 0) & (n[(i + 1) % 8] == 1) for i in range(8))
            if step == 0:
                keep_a, keep_b = n[0] * n[2] * n[4], n[2] * n[4] * n[6]
            else:
                keep_a, keep_b = n[0] * n[2] * n[6], n[0] * n[4] * n[6]
            remove = (
                (p[1:-1, 1:-1] == 1)
                & (count >= 2)
                & (count <= 6)
                & (turns == 1)
                & (keep_a == 0)
                & (keep_b == 0)
            )
            if remove.any():
                image[1:-1, 1:-1][remove] = 0
                changed = True
        if not changed:
            return image[1:-1, 1:-1].astype(bool)


def _fine_pen(
    glyph: Image.Image, rng: np.random.Generator, width: tuple[float, float]
) -> Image.Image:
    """The glyph redrawn along its centre line with a pen `width` (a share of its height)."""
    line = skeleton(np.asarray(glyph) > 127)
    width = max(2, round(rng.uniform(*width) * glyph.height))
    pen = Image.fromarray(line.astype(np.uint8) * 255, mode="L")
    pen = pen.filter(ImageFilter.MaxFilter(width // 2 * 2 + 1))
    return pen.filter(ImageFilter.GaussianBlur(0.5))  # anti-aliased, like a rendered glyph


def render_photo(
    char: str,
    font_path: Path,
    rng: np.random.Generator,
    dark_on_light: bool,
    pen: str = "font",
    fine_pen: tuple[float, float] = FINE_PEN,
) -> Image.Image:
    """One character as a phone photo or scan might show it (8-bit gray or RGB)."""
    font = ImageFont.truetype(str(font_path), size=int(rng.integers(60, 170)))
    left, top, right, bottom = font.getbbox(char)
    glyph = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(glyph).text((4 - left, 4 - top), char, fill=255, font=font)
    if pen == "fine":
        glyph = _fine_pen(glyph, rng, fine_pen)
    glyph = glyph.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BICUBIC, expand=True)
    gw, gh = glyph.size
    width = int(max(gw, gh) * rng.uniform(1.4, 3.0))
    height = int(max(gw, gh) * rng.uniform(1.3, 2.5))
    width, height = max(width, gw + 4), max(height, gh + 4)
    x = int(rng.integers(2, width - gw - 1))  # anywhere: off-centre
    y = int(rng.integers(2, height - gh - 1))
    mask = np.zeros((height, width), dtype=np.float32)
    mask[y : y + gh, x : x + gw] = np.asarray(glyph, dtype=np.float32) / 255
    if dark_on_light:
        paper, ink = rng.uniform(170, 250), rng.uniform(0, 70)
    else:
        paper, ink = rng.uniform(0, 70), rng.uniform(180, 255)
    # Uneven light: a brightness ramp across the picture.
    ramp_x, ramp_y = np.meshgrid(np.linspace(-1, 1, width), np.linspace(-1, 1, height))
    angle = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0, 0.15) * (np.cos(angle) * ramp_x + np.sin(angle) * ramp_y)
    pixels = (paper + (ink - paper) * mask) * light
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2) * gh / 100))  # focus
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(1, 8), (height, width))
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), mode="L")
    if rng.random() < 0.3:  # a colour photo of tinted paper
        tint = rng.uniform(0.85, 1.0, size=3)
        rgb = np.asarray(image, dtype=np.float32)[..., None] * tint
        image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")
    return image


def _encode(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    if rng.random() < 0.5:
        image.save(buffer, format="JPEG", quality=int(rng.integers(50, 95)))
        return buffer.getvalue(), ".jpg"
    image.save(buffer, format="PNG")
    return buffer.getvalue(), ".png"


def write_font_set(
    out_dir: Path,
    fonts: Mapping[HandFont, Path],
    split: str = "balanced",
    variants: int = 1,
    seed: int = 0,
    fine_pen: tuple[float, float] = FINE_PEN,
) -> Path:
    """Render `variants` images per font, character, pen and polarity; write labels.csv."""
    if not fonts:
        raise ValueError("no fonts to render: install " + " ".join(font_packages()))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for font, font_path in fonts.items():
        for char, label in drawn_characters(font, split):
            code = f"u{ord(char):04x}"  # file names that differ on case-insensitive disks
            for pen, polarity, variant in product(PENS, POLARITIES, range(variants)):
                rng = _rng(seed, font.file, char, pen, polarity, str(variant))
                dark_on_light = polarity == "dark_on_light"
                image = render_photo(char, font_path, rng, dark_on_light, pen, fine_pen)
                data, suffix = _encode(image, rng)
                name = f"{font.name}_{code}_{pen}_{polarity}_{variant}{suffix}"
                (out_dir / name).write_bytes(data)
                rows.append([name, label, char, font.name, pen, polarity])
    with (out_dir / LABELS_CSV).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "drawn", "font", "pen", "polarity"])
        writer.writerows(rows)
    return out_dir


@dataclass(frozen=True)
class FontSample:
    path: Path
    label: str
    drawn: str
    font: str
    pen: str
    polarity: str


def read_font_set(folder: Path) -> list[FontSample]:
    """The samples listed in a folder's labels.csv."""
    with (Path(folder) / LABELS_CSV).open(newline="") as f:
        return [
            FontSample(
                Path(folder) / r["file"], r["label"], r["drawn"], r["font"], r["pen"], r["polarity"]
            )
            for r in csv.DictReader(f)
        ]


@dataclass
class FontSetScore:
    accuracy: float
    total: int
    refused: int  # images preprocessing refused (no ink found): counted as misses
    by_font: dict[str, float]
    by_pen: dict[str, float]
    by_polarity: dict[str, float]
    # (drawn character, predicted class) -> count, for the images read wrong
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)


def score_font_set(
    predictor: Predictor,
    samples: list[FontSample],
    load: Callable[[Path], torch.Tensor] = load_views,
    batch_size: int = 512,
) -> FontSetScore:
    """Accuracy of a predictor on the set, overall and per group; `load` prepares each file
    as its views (V, 1, 28, 28) or one (1, 28, 28) input, probabilities averaged over views."""
    hits: list[bool] = []
    refused = 0
    confusions: Counter[tuple[str, str]] = Counter()
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        images, readable = [], []
        for sample in chunk:
            try:
                images.append(load(sample.path))
                readable.append(True)
            except ImageInputError:  # what a user would get too: a miss
                readable.append(False)
        indices = view_probabilities(predictor, images).argmax(dim=1) if images else []
        predicted = iter(list(indices))
        for sample, ok in zip(chunk, readable, strict=True):
            answer = predictor.class_names[int(next(predicted))] if ok else "refused"
            hits.append(answer == sample.label)
            if answer != sample.label:
                confusions[(sample.drawn, answer)] += 1
        refused += readable.count(False)

    def grouped(key: str) -> dict[str, float]:
        groups: dict[str, list[bool]] = defaultdict(list)
        for sample, hit in zip(samples, hits, strict=True):
            groups[getattr(sample, key)].append(hit)
        return {name: float(np.mean(group)) for name, group in sorted(groups.items())}

    return FontSetScore(
        float(np.mean(hits)),
        len(hits),
        refused,
        grouped("font"),
        grouped("pen"),
        grouped("polarity"),
        confusions,
    )
