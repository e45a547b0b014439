"""Validation scores of trained models, with and without test-time shifts: the numbers the
recipes' choices are made on (never the test split).

    python benchmarks/validation_scores.py --data-dir ../shared/data/emnist-proxy CKPT [CKPT ...]

For each model file: balanced accuracy (macro recall) and accuracy on the validation split a
training run with the same `--seed` and `--val-fraction` held out, plain and with
`test_time_shift` 1; for an ensemble (model=bn_cnn_ensemble), also each member alone. Test
accuracy is printed for information only. Scored under bf16 autocast
where the CPU has native bf16, as training's own validation runs (`trainer.precision=auto`).
Given two or more models, it then prints each later one's difference in validation balanced
accuracy from the first with a 95% interval (a paired bootstrap over the validation images,
`emnist_lightning.evaluation.paired_bootstrap`): an interval that straddles 0 is a choice the
split cannot make.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_recall

from emnist_lightning.data.datamodule import EMNISTDataModule
from emnist_lightning.data.labels import check_split_matches
from emnist_lightning.errors import UserError, first_line
from emnist_lightning.evaluation.paired_bootstrap import paired_difference
from emnist_lightning.inference.model_files import load_model
from emnist_lightning.models.card import NormalizedNet
from emnist_lightning.training.precision import cpu_has_native_bf16


@torch.inference_mode()
def predictions(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_native_bf16()):
        return torch.cat([model(chunk.float().div(255)).argmax(1) for chunk in images.split(2048)])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", type=Path, help="checkpoints or model files")
    parser.add_argument("--data-dir", default="../shared/data/emnist-proxy")
    parser.add_argument("--seed", type=int, default=42, help="the training run's seed")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--split", default="balanced")
    parser.add_argument(
        "--resamples",
        type=int,
        default=1000,
        help="paired bootstrap resamples (two or more models)",
    )
    args = parser.parse_args()
    try:
        score(args)
    except UserError as exc:  # a missing data file, a damaged or mismatched model file
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2
    return 0


def score(args: argparse.Namespace) -> None:
    data = EMNISTDataModule(
        data_dir=args.data_dir,
        split=args.split,
        download=False,
        seed=args.seed,
        val_fraction=args.val_fraction,
    )
    (val_images, val_labels), (test_images, test_labels) = data.val_set(), data.test_set()
    classes = data.num_classes
    plain: list[tuple[str, torch.Tensor]] = []  # each model's validation predictions, unshifted
    print("| model | test-time shift | val balanced acc | val acc | (test acc) |")
    print("| --- | --- | --- | --- | --- |")
    for path in args.models:
        loaded = load_model(path)
        check_split_matches(list(loaded.card.class_names), args.split)
        for name, model in scored_models(str(path), loaded.model):
            for shift in (0, 1):
                model.test_time_shift = shift
                val = predictions(model, val_images)
                test = predictions(model, test_images)
                balanced = multiclass_recall(val, val_labels, classes, average="macro")
                accuracy = multiclass_accuracy(val, val_labels, classes, average="micro")
                tested = multiclass_accuracy(test, test_labels, classes, average="micro")
                if shift == 0:
                    plain.append((name, val))
                print(
                    f"| {name} | {shift} | {100 * balanced:.2f}% | {100 * accuracy:.2f}% | "
                    f"({100 * tested:.2f}%) |"
                )
    print_differences(plain, val_labels, classes, args.resamples)


def print_differences(
    plain: list[tuple[str, torch.Tensor]], labels: torch.Tensor, classes: int, resamples: int
) -> None:
    """Each later model against the first, with the interval the split allows."""
    (first_name, first), *others = plain
    if not others:
        return
    rarest = int(torch.bincount(labels, minlength=classes).min())
    print(
        f"\nval balanced acc against {first_name} (no shift; paired bootstrap, {resamples:,} "
        f"resamples of the {len(labels):,} validation images, the rarest class has {rarest}):"
    )
    for name, predicted in others:
        diff = paired_difference(first, predicted, labels, classes, resamples)
        print(
            f"- {name}: {diff.observed:+.2f} points, 95% interval [{diff.low:+.2f}, {diff.high:+.2f}]"
        )


def scored_models(name: str, model: NormalizedNet) -> list[tuple[str, NormalizedNet]]:
    """The model, then, for an ensemble, each member alone (same input normalisation): what
    the ensemble adds over its members is the figure that decides whether it is worth its cost."""
    scored = [(name, model)]
    for number, member in enumerate(getattr(model.net, "members", ()), start=1):
        alone = copy.copy(model)  # a shallow copy: its own `net` attribute, shared weights
        alone._modules = dict(model._modules, net=member)
        scored.append((f"{name} member {number}", alone))
    return scored


if __name__ == "__main__":
    sys.exit(main())
