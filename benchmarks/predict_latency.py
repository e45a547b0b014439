"""Inference speed of a trained model on the CPU: single-image latency and batch throughput.

    python benchmarks/predict_latency.py --ckpt logs/train/runs/<run>/checkpoints/last.ckpt

Single image: read a PNG, preprocess it the EMNIST way, forward; median of --repeats runs.
Batch: forward passes over --batch-size test-sized inputs, images per second. Both for the
PyTorch checkpoint and, with --onnx, for its ONNX export.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from emnist_lightning.inference.predictors import load_predictor
from emnist_lightning.inference.preprocess import load_character


def _sample_png(folder: Path) -> Path:
    image = Image.new("L", (240, 180), 245)
    ImageDraw.Draw(image).text((40, 20), "R", fill=10, font=ImageFont.load_default(size=120))
    path = folder / "sample.png"
    image.save(path)
    return path


def measure(model_path: Path, repeats: int, batch_size: int) -> dict[str, float]:
    predictor = load_predictor(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        png = _sample_png(Path(tmp))
        for _ in range(5):  # warm-up
            predictor.probabilities(load_character(png).unsqueeze(0))
        latencies = []
        for _ in range(repeats):
            start = time.perf_counter()
            predictor.probabilities(load_character(png).unsqueeze(0))
            latencies.append(time.perf_counter() - start)
    batch = torch.rand(batch_size, 1, 28, 28)
    predictor.probabilities(batch)
    start = time.perf_counter()
    rounds = 10
    for _ in range(rounds):
        predictor.probabilities(batch)
    throughput = rounds * batch_size / (time.perf_counter() - start)
    return {"latency_ms": 1000 * statistics.median(latencies), "images_per_s": throughput}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ckpt", required=True, type=Path, help="a .ckpt (or .onnx / .torch) model file"
    )
    parser.add_argument("--onnx", type=Path, help="also measure this ONNX export")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    print(f"threads: {torch.get_num_threads()}")
    print(
        "| model file | single image: preprocess + forward (median) | batch of "
        f"{args.batch_size}: images/s |\n| --- | --- | --- |"
    )
    for path in filter(None, (args.ckpt, args.onnx)):
        figures = measure(path, args.repeats, args.batch_size)
        print(f"| {path.name} | {figures['latency_ms']:.2f} ms | {figures['images_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
