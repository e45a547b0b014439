"""People's pens in one run: how trained models read EMNIST's own test images sent as PNG
files (against the raw pixels), page-like drawings and the held-back font set, through the
preprocessing before issue 18 and today's. Inference only: nothing here is timed.

    python benchmarks/pens_benchmark.py --data-dir ../shared/data/emnist-proxy \
        --model fast=<run>/character_recognition.torch --model default=<...> --model best=<...>

"before" is the preprocessing when issue 18 was filed: every image redrawn
(`preprocess.redrawn_frame`) at one pen width. "now" is what predict.py and the server do
today (`preprocess.load_views`, averaged over its views by `predictors.view_probabilities`,
as predict.py and the server read a file). The inputs are prepared once and shared by every
model.
Page-like drawings: 10 test-split shapes per class traced with the page's pen
(benchmarks/page_like.py). The font set is rendered into --font-set on first use
(benchmarks/real_pens.py; --seed 0 is the published set).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from fine_tune_pens import pick
from page_like import page_like_png
from PIL import Image

from emnist_lightning.atomic_files import replaced_atomically
from emnist_lightning.data.datamodule import load_split
from emnist_lightning.data.labels import split_info
from emnist_lightning.errors import CheckpointError, ImageInputError, UserError, first_line
from emnist_lightning.evaluation.font_set import find_fonts, read_font_set, write_font_set
from emnist_lightning.inference.predictors import Predictor, load_predictor, view_probabilities
from emnist_lightning.inference.preprocess import load_grayscale, load_views, redrawn_frame

Reader = Callable[[io.BytesIO | Path], torch.Tensor]


def read_before(source: io.BytesIO | Path) -> torch.Tensor:
    """The preprocessing before issue 18: every image redrawn at one pen width."""
    return redrawn_frame(load_grayscale(source))


READERS: dict[str, Reader] = {"before": read_before, "now": load_views}


def png(pixels: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def prepared(
    sources: list[bytes | Path], reader: Reader
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each source's views (a blank image where preprocessing refuses one) and which read."""
    inputs, readable = [], []
    for source in sources:
        try:
            inputs.append(reader(io.BytesIO(source) if isinstance(source, bytes) else source))
            readable.append(True)
        except ImageInputError:  # what a user would get too: counted as a miss
            inputs.append(torch.zeros(1, 28, 28))
            readable.append(False)
    return inputs, torch.tensor(readable)


def accuracy(
    predictor: Predictor,
    inputs: list[torch.Tensor],
    labels: torch.Tensor,
    readable: torch.Tensor,
) -> float:
    """Share of images read right, each image's probabilities averaged over its views."""
    predicted = torch.cat(
        [
            view_probabilities(predictor, inputs[start : start + 2048]).argmax(1)
            for start in range(0, len(inputs), 2048)
        ]
    )
    return float(((predicted == labels) & readable).float().mean())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a model to score, named in the table (repeatable)",
    )
    parser.add_argument("--font-set", type=Path, default=Path("data/font_set"))
    parser.add_argument("--seed", type=int, default=0, help="seed of a newly rendered font set")
    parser.add_argument("--images", type=int, default=14100, help="EMNIST test images (subset)")
    parser.add_argument("--per-class", type=int, default=10, help="page-like drawings per class")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    return parser.parse_args()


def named_models(entries: list[str]) -> list[tuple[str, Path]]:
    models = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            sys.exit(f"error: --model {entry!r} is not NAME=PATH: e.g. --model fast=run/model.ckpt")
        models.append((name, Path(path)))
    return models


def main() -> int:
    args = parse_args()
    models = named_models(args.model)
    torch.set_grad_enabled(False)
    try:
        return run(args, models)
    except UserError as exc:  # a missing data file, a damaged or mismatched model file
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, models: list[tuple[str, Path]]) -> int:
    # Every model is loaded and checked first, before minutes of preparing inputs.
    predictors = [load_predictor(path) for _, path in models]
    balanced = list(split_info("balanced").characters)
    for (_, path), predictor in zip(models, predictors, strict=True):
        if predictor.class_names != balanced:
            raise CheckpointError(
                f"{path}: its {len(predictor.class_names)} classes are not EMNIST balanced's "
                f"{len(balanced)}: this benchmark scores balanced-split models"
            )
    images, labels = load_split(args.data_dir, "balanced", train=False)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    test_images, test_labels = images[order[: args.images]], labels[order[: args.images]]
    drawn = pick(labels, args.per_class, seed=1)
    if not (args.font_set / "labels.csv").is_file():
        fonts = find_fonts()
        if not fonts:
            sys.exit("error: no handwriting fonts found: see benchmarks/real_pens.py")
        write_font_set(args.font_set, fonts, seed=args.seed)
    fonts = read_font_set(args.font_set)

    sets: dict[str, tuple[list[bytes | Path], torch.Tensor]] = {
        "EMNIST test as PNG": ([png(image[0]) for image in test_images], test_labels),
        "page-like": ([page_like_png(images[int(i), 0].numpy()) for i in drawn], labels[drawn]),
    }
    prepared_sets = {
        (set_name, reader_name): prepared(sources, reader)
        for set_name, (sources, _) in sets.items()
        for reader_name, reader in READERS.items()
    }
    font_inputs = {
        name: prepared([s.path for s in fonts], reader) for name, reader in READERS.items()
    }

    raw = list(test_images.float().div(255))
    all_read = torch.ones(len(test_labels), dtype=torch.bool)
    results = []
    for (name, path), predictor in zip(models, predictors, strict=True):
        row: dict[str, float | str] = {"model": name, "file": str(path)}
        row["EMNIST test, raw pixels"] = accuracy(predictor, raw, test_labels, all_read)
        for (set_name, reader_name), (inputs, readable) in prepared_sets.items():
            row[f"{set_name}, {reader_name}"] = accuracy(
                predictor, inputs, sets[set_name][1], readable
            )
        index = {c: i for i, c in enumerate(predictor.class_names)}
        font_labels = torch.tensor([index[s.label] for s in fonts])
        for reader_name, (inputs, readable) in font_inputs.items():
            row[f"font set, {reader_name}"] = accuracy(predictor, inputs, font_labels, readable)
        results.append(row)

    columns = [key for key in results[0] if key not in ("model", "file")]
    print(
        f"{len(test_labels)} EMNIST test images, {len(drawn)} page-like drawings, "
        f"{len(fonts)} font-set images ({args.font_set})\n"
    )
    print("| model | " + " | ".join(columns) + " |")
    print("| --- " * (len(columns) + 1) + "|")
    for row in results:
        cells = " | ".join(f"{100 * float(row[c]):.2f}%" for c in columns)
        print(f"| {row['model']} | {cells} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(args.out) as partial:
            partial.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
