"""EMNIST's own images sent as PNG files: read through the preprocessing as the API reads
them, against feeding the model the raw pixels. Inference only.

    python benchmarks/emnist_passthrough.py --data-dir ../shared/data/emnist-proxy \
        --model logs/train/runs/<run>/checkpoints/last.ckpt [--images 14100]

"before" redraws every image (preprocess.redrawn_frame, what load_character did for all
input until EMNIST-form images passed through); "now" is load_character itself.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from emnist_lightning.data.datamodule import load_split
from emnist_lightning.inference.predictors import load_predictor
from emnist_lightning.inference.preprocess import (
    in_emnist_form,
    load_character,
    load_grayscale,
    redrawn_frame,
)


def png(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[0].numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def accuracy(predictor, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    predicted = torch.cat(
        [
            predictor.probabilities(inputs[i : i + 2048]).argmax(1)
            for i in range(0, len(labels), 2048)
        ]
    )
    return float((predicted == labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--images", type=int, default=14100, help="test images (seeded subset)")
    args = parser.parse_args()
    images, labels = load_split(args.data_dir, "balanced", train=False)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    images, labels = images[order[: args.images]], labels[order[: args.images]]
    started = time.perf_counter()
    files = [png(image) for image in images]
    now = torch.stack([load_character(io.BytesIO(f)) for f in files])
    before = torch.stack([redrawn_frame(load_grayscale(io.BytesIO(f))) for f in files])
    passed = sum(in_emnist_form(load_grayscale(io.BytesIO(f))) for f in files)
    raw = images.float().div(255)
    print(
        f"{len(files)} test images as PNG, {passed} pass through unchanged "
        f"({time.perf_counter() - started:.0f} s to prepare)"
    )
    print("| model | raw pixels | PNG, redrawn (before) | PNG, now |")
    print("| --- | --- | --- | --- |")
    for path in args.model:
        predictor = load_predictor(path)
        row = [accuracy(predictor, x, labels) for x in (raw, before, now)]
        print(f"| {path} | " + " | ".join(f"{100 * a:.2f}%" for a in row) + " |")
    same = float(np.mean([torch.equal(a, b) for a, b in zip(now, raw, strict=True)]))
    print(f"inputs now equal to the raw pixels: {100 * same:.2f}%")


if __name__ == "__main__":
    main()
