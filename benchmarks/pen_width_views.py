"""Pen-width views (issue 18): calibrating EMNIST's pen percentiles, and choosing how many
views to average and for which pens. Inference only; nothing here is timed.

    python benchmarks/pen_width_views.py calibrate --data-dir ../shared/data/emnist-proxy
    python benchmarks/pen_width_views.py score --data-dir ../shared/data/emnist-proxy \
        --model <model file> [--model ...] --font-set <folder> --shapes validation

calibrate: EMNIST's stroke widths in the 28x28 frame (twice the ink over its outline) at
several percentiles of the first --images training images, and, for page-like drawings of
validation shapes redrawn at a grid of pens (fractions of the longer side), the median width
that gives in the 28x28 frame; the pen giving each EMNIST percentile is read off by linear
interpolation. These are preprocess.EMNIST_PEN_WIDTHS.

score: accuracy on page-like drawings (benchmarks/page_like.py) of --shapes shapes and on a
rendered font set, for one view (today), 3 and 5 views, for every redrawn pen ("all") or
only pens thinner than EMNIST's median ("thinner"); "shipped" is load_views with
view_probabilities, what predict.py and the server run.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch
from fine_tune_pens import pick
from page_like import page_like_png

from emnist_lightning.data.datamodule import load_split
from emnist_lightning.data.sampling import stratified_split
from emnist_lightning.evaluation.font_set import read_font_set
from emnist_lightning.inference.predictors import load_predictor, view_probabilities
from emnist_lightning.inference.preprocess import (
    EMNIST_PEN_WIDTHS,
    _emnist_frame,
    _ink_mask,
    in_emnist_form,
    light_ink_on_dark,
    load_grayscale,
    load_views,
    normalise_stroke_width,
    stroke_width,
    with_stroke_width,
)

PERCENTILES = (5, 10, 20, 30, 50, 70, 80, 90, 95)
# name -> (percentiles of the views, views only for pens thinner than EMNIST's median)
CHOICES = {
    "1 view (today)": ((), False),
    "3 views, all": ((20, 50, 80), False),
    "3 views, thinner": ((20, 50, 80), True),
    "5 views, all": ((10, 30, 50, 70, 90), False),
    "5 views, thinner": ((10, 30, 50, 70, 90), True),
    "3 thinner pens (5/20/50), all": ((5, 20, 50), False),
    "3 thinner pens (5/20/50), thinner": ((5, 20, 50), True),
}


def shapes(data_dir: Path, which: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` upright uint8 EMNIST images per class of the validation or test split."""
    if which == "test":
        images, labels = load_split(data_dir, "balanced", train=False)
    else:
        images, labels = load_split(data_dir, "balanced", train=True)
        _, val = stratified_split(labels, 0.1, 42)  # the datamodule's validation split
        images, labels = images[val], labels[val]
    chosen = pick(labels, per_class, seed=1)
    return images[chosen], labels[chosen]


def page_likes(images: torch.Tensor) -> list[bytes]:
    return [page_like_png(image[0].numpy()) for image in images]


def calibrate(args: argparse.Namespace) -> None:
    train, _ = load_split(args.data_dir, "balanced", train=True)
    frames = train[: args.images].float() / 255
    emnist = np.percentile([stroke_width(f[None], smoothing=0) for f in frames], PERCENTILES)
    images, _ = shapes(args.data_dir, "validation", args.per_class)
    masks = [
        _ink_mask(light_ink_on_dark(load_grayscale(io.BytesIO(png))), "image")
        for png in page_likes(images)
    ]
    grid = np.round(np.arange(0.05, 0.2301, 0.01), 3)
    measured = []
    for pen in grid:
        widths = [
            stroke_width(_emnist_frame(with_stroke_width(m, float(pen)))[None], smoothing=0)
            for m in masks
        ]
        measured.append(float(np.median(widths)))
        print(f"pen {pen:.3f} of the longer side -> median {measured[-1]:.2f} px at 28x28")
    print(f"\n{len(frames)} EMNIST training images, {len(masks)} page-like validation shapes")
    print("| percentile | EMNIST width (px) | pen (share of the longer side) |")
    print("| --- | --- | --- |")
    for q, px in zip(PERCENTILES, emnist, strict=True):
        print(f"| {q} | {px:.2f} | {np.interp(px, measured, grid):.3f} |")


def mask_of(pixels: np.ndarray) -> torch.Tensor | None:
    """The binary mask a redrawn image starts from; None for EMNIST-form input."""
    if in_emnist_form(pixels) and float(pixels.max()) >= 0.1:
        return None
    return _ink_mask(light_ink_on_dark(pixels), "image")


def views_per_choice(
    files: list[bytes], choices: list[str]
) -> tuple[dict[str, list[torch.Tensor]], int]:
    """Each choice's views of every file (each pen drawn once), and how many redrawn pens
    are thinner than EMNIST's median."""
    median = EMNIST_PEN_WIDTHS[50]
    masks = [mask_of(load_grayscale(io.BytesIO(f))) for f in files]
    drawn = [None if m is None else stroke_width(m) / max(m.shape[-2:]) for m in masks]
    cache: dict[tuple[int, float | None], torch.Tensor] = {}

    def frame(i: int, pen: float | None) -> torch.Tensor:
        if (i, pen) not in cache:
            mask = masks[i]
            mask = normalise_stroke_width(mask) if pen is None else with_stroke_width(mask, pen)
            cache[(i, pen)] = _emnist_frame(mask)
        return cache[(i, pen)]

    inputs: dict[str, list[torch.Tensor]] = {}
    for name in choices:
        percentiles, thinner = CHOICES[name]
        views = []
        for i, width in enumerate(drawn):
            if width is None:
                views.append(load_views(io.BytesIO(files[i])))
            elif not percentiles or (thinner and width >= median):
                views.append(frame(i, None)[None])
            else:
                views.append(torch.stack([frame(i, EMNIST_PEN_WIDTHS[q]) for q in percentiles]))
        inputs[name] = views
    inputs["shipped"] = [load_views(io.BytesIO(f)) for f in files]
    return inputs, sum(w is not None and w < median for w in drawn)


def score(args: argparse.Namespace) -> None:
    images, labels = shapes(args.data_dir, args.shapes, args.per_class)
    sets = {f"page-like ({args.shapes})": (page_likes(images), labels.tolist())}
    if args.font_set:
        samples = read_font_set(args.font_set)
        sets["font set"] = ([s.path.read_bytes() for s in samples], [s.label for s in samples])
    predictors = {str(m): load_predictor(m) for m in args.model}
    for set_name, (files, truth) in sets.items():
        inputs, thin = views_per_choice(files, args.choice or list(CHOICES))
        print(f"\n{set_name}: {len(files)} images, {thin} redrawn pens thinner than the median")
        print("| model | " + " | ".join(inputs) + " |")
        print("| --- " * (len(inputs) + 1) + "|")
        for model, predictor in predictors.items():
            names = predictor.class_names
            row = []
            for views in inputs.values():
                predicted = view_probabilities(predictor, views).argmax(dim=1)
                hits = [
                    (names[int(p)] if isinstance(t, str) else int(p)) == t
                    for p, t in zip(predicted, truth, strict=True)
                ]
                row.append(f"{np.mean(hits):.2%}")
            print(f"| {model} | " + " | ".join(row) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate")
    cal.add_argument("--data-dir", type=Path, required=True)
    cal.add_argument("--images", type=int, default=5000)
    cal.add_argument("--per-class", type=int, default=5)
    sc = sub.add_parser("score")
    sc.add_argument("--data-dir", type=Path, required=True)
    sc.add_argument("--model", type=Path, action="append", required=True)
    sc.add_argument("--font-set", type=Path)
    sc.add_argument("--shapes", choices=("validation", "test"), default="validation")
    sc.add_argument("--per-class", type=int, default=10)
    sc.add_argument("--choice", action="append", choices=list(CHOICES), help="default: all")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    calibrate(args) if args.command == "calibrate" else score(args)


if __name__ == "__main__":
    main()
