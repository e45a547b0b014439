"""How well trained models read "real pens": the font-render set beside the EMNIST test split.

    python benchmarks/real_pens.py --data-dir ../shared/data/emnist-proxy \
        --model logs/train/runs/<run>/checkpoints/last.ckpt --model <another model file>

Renders the held-back font set into --font-set on first use (handwriting fonts from Debian
packages, see emnist_lightning.evaluation.font_set; never used for training), then prints, per model, its
accuracy on the set through today's preprocessing (overall, per pen, per polarity, per font),
through the preprocessing before issue 11 (--before), and on the split's official test images
(--data-dir). Accuracies only: nothing here is timed. --out writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from preprocess_before import load_character_before

from emnist_lightning.data.datamodule import load_split
from emnist_lightning.evaluation.font_set import (
    find_fonts,
    font_packages,
    read_font_set,
    score_font_set,
    write_font_set,
)
from emnist_lightning.inference.predictors import load_predictor


def test_split_accuracy(predictor, data_dir: Path, split: str, batch: int = 2048) -> float:
    images, labels = load_split(data_dir, split, train=False)
    hits = 0
    for start in range(0, len(labels), batch):
        chunk = images[start : start + batch].float().div(255)
        predicted = predictor.probabilities(chunk).argmax(dim=1)
        hits += int((predicted == labels[start : start + batch]).sum())
    return hits / len(labels)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        type=Path,
        help="a .ckpt, .onnx or character_recognition.torch (repeatable)",
    )
    parser.add_argument(
        "--font-set",
        type=Path,
        default=Path("data/font_set"),
        help="folder of the rendered set (rendered there when missing)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of a newly rendered set")
    parser.add_argument("--data-dir", type=Path, help="EMNIST files, for test-split accuracy")
    parser.add_argument("--split", default="balanced")
    parser.add_argument(
        "--before", action="store_true", help="also score the preprocessing before issue 11"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    torch.set_grad_enabled(False)
    if not (args.font_set / "labels.csv").is_file():
        fonts = find_fonts()
        if not fonts:
            packages = " ".join(font_packages())
            print(f"error: no handwriting fonts found: apt-get install {packages}", file=sys.stderr)
            return 2
        print(f"rendering the font set into {args.font_set} ({len(fonts)} fonts)")
        write_font_set(args.font_set, fonts, split=args.split, seed=args.seed)
    samples = read_font_set(args.font_set)

    results = []
    for path in args.model:
        predictor = load_predictor(path)
        score = score_font_set(predictor, samples)
        row = {
            "model": str(path),
            "font_set_acc": score.accuracy,
            "font_set_images": score.total,
            "refused": score.refused,
            "by_pen": score.by_pen,
            "by_polarity": score.by_polarity,
            "by_font": score.by_font,
            "confusions": score.confusions.most_common(),
        }
        if args.before:
            before = score_font_set(predictor, samples, load=load_character_before)
            row["font_set_acc_before"] = before.accuracy
            row["by_pen_before"] = before.by_pen
        if args.data_dir:
            row["test_acc"] = test_split_accuracy(predictor, args.data_dir, args.split)
        results.append(row)

    print(f"\n{len(samples)} font-set images in {args.font_set}\n")
    print(
        "| model | test split | font set, before | font set | font's pen | fine pen "
        "| dark on light | light on dark |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.2%}"

    for row in results:
        pen, pol = row["by_pen"], row["by_polarity"]
        print(
            f"| {row['model']} | {pct(row.get('test_acc'))} | "
            f"{pct(row.get('font_set_acc_before'))} | {pct(row['font_set_acc'])} | "
            f"{pct(pen.get('font'))} | {pct(pen.get('fine'))} | "
            f"{pct(pol.get('dark_on_light'))} | {pct(pol.get('light_on_dark'))} |"
        )
    for row in results:
        if "by_pen_before" in row:
            pens = ", ".join(f"{k} {v:.2%}" for k, v in row["by_pen_before"].items())
            print(f"before, per pen: {row['model']}: {pens}")
    print("\nmost frequent mistakes (drawn -> read, of all images read wrong):")
    for row in results:
        mistakes = ", ".join(f"{d}->{p} {n}" for (d, p), n in row["confusions"][:12])
        print(f"  {row['model']}: {mistakes}")
    print("\nper font:")
    for row in results:
        fonts = ", ".join(f"{name} {acc:.0%}" for name, acc in row["by_font"].items())
        print(f"  {row['model']}: {fonts}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
