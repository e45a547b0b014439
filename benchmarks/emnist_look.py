"""Does preprocessing give users' images EMNIST's look? Stroke widths and brightness shares.

    python benchmarks/emnist_look.py --data-dir ../shared/data/emnist-proxy --font-set data/font_set

Prints, for EMNIST's training images and for the font set's images prepared today and before
issue 11: the stroke width (twice the ink over its outline, in pixels of the 28x28 frame;
5th, 25th, 50th, 75th, 95th percentile), the share of pixels brighter than 0.05, 0.5 and 0.9,
and the median span of the ink box. preprocess.STROKE_RANGE and BLUR_SIGMA were set so the
font set matches EMNIST here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from preprocess_before import load_character_before

from emnist_lightning.data.datamodule import load_split
from emnist_lightning.evaluation.font_set import read_font_set
from emnist_lightning.inference.preprocess import load_character, stroke_width


def look(frames: torch.Tensor) -> str:
    widths = [stroke_width(f[None], smoothing=0) for f in frames]
    pixels = frames.numpy()
    ink = pixels > 0.02
    spans = [
        max(np.ptp(np.flatnonzero(m.any(axis=1))), np.ptp(np.flatnonzero(m.any(axis=0)))) + 1
        for m in ink[:, 0]
    ]
    width = " / ".join(f"{w:.2f}" for w in np.percentile(widths, [5, 25, 50, 75, 95]))
    shares = " / ".join(f"{(pixels > t).mean():.3f}" for t in (0.05, 0.5, 0.9))
    return f"| {width} | {shares} | {np.median(spans):.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--font-set", type=Path, default=Path("data/font_set"))
    parser.add_argument("--images", type=int, default=5000, help="EMNIST images to measure")
    args = parser.parse_args()
    images, _ = load_split(args.data_dir, "balanced", train=True)
    samples = read_font_set(args.font_set)
    print(
        "| images | stroke width p5 / p25 / p50 / p75 / p95 (px) | share > 0.05 / 0.5 / 0.9 "
        "| ink span (px) |"
    )
    print("| --- | --- | --- | --- |")
    print(f"| EMNIST training split (first {args.images}) " + look(images[: args.images] / 255))
    for name, load in (("today", load_character), ("before issue 11", load_character_before)):
        frames = torch.stack([load(s.path) for s in samples])
        print(f"| font set, {name} " + look(frames))
        for pen in sorted({s.pen for s in samples}):
            chosen = torch.stack([f for f, s in zip(frames, samples, strict=True) if s.pen == pen])
            print(f"| font set, {name}, {pen} pen " + look(chosen))


if __name__ == "__main__":
    main()
