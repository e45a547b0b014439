"""Does fine-tuning on a pen's corrections teach a model that pen? Before/after figures.

    python benchmarks/fine_tune_pens.py --data-dir ../shared/data/emnist-proxy \
        --model logs/train/runs/<experiment=fast run>/checkpoints/last.ckpt

Draws EMNIST shapes as the page draws them (benchmarks/page_like.py: one pen style, the
page's thin uniform pen), stores --per-class of them per class from the training split as
corrections through the server's own writer (data/corrections.py: the 28x28 input after
preprocessing), fine-tunes the model on EMNIST plus that folder with train.py's
`init_from= data.extra=[...]`, and prints, before and after: accuracy on --held-out drawings
per class of the same pen made from the test split (other images, never trained on) and on
the whole proxy test split. Extra train.py overrides go after `--`.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from page_like import page_like_png

from emnist_lightning.data.corrections import write_correction
from emnist_lightning.data.datamodule import load_split
from emnist_lightning.inference.predictors import load_predictor
from emnist_lightning.inference.preprocess import load_character

REPO = Path(__file__).resolve().parents[1]


def pick(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """`per_class` seeded indices of each class."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in range(int(labels.max()) + 1):
        members = torch.nonzero(labels == cls).flatten()
        order = torch.randperm(len(members), generator=generator)[:per_class]
        chosen.append(members[order])
    return torch.cat(chosen)


def drawn(images: torch.Tensor, indices: torch.Tensor) -> tuple[list[bytes], torch.Tensor]:
    """Page-like PNGs of the chosen images and their preprocessed (N, 1, 28, 28) inputs."""
    pngs = [page_like_png(images[int(i), 0].numpy()) for i in indices]
    return pngs, torch.stack([load_character(io.BytesIO(png)) for png in pngs])


def accuracy(model: Path, images: torch.Tensor, labels: torch.Tensor) -> float:
    predictor = load_predictor(model)
    hits = 0
    for start in range(0, len(labels), 2048):
        batch = images[start : start + 2048]
        batch = batch.float().div(255) if batch.dtype == torch.uint8 else batch
        hits += int(
            (predictor.probabilities(batch).argmax(1) == labels[start : start + 2048]).sum()
        )
    return hits / len(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="the .ckpt to fine-tune")
    parser.add_argument("--per-class", type=int, default=20, help="corrections per class")
    parser.add_argument("--held-out", type=int, default=10, help="test drawings per class")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fine_tune_pens"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="train.py overrides for the fine-tune")
    args = parser.parse_args()

    train_images, train_labels = load_split(args.data_dir, "balanced", train=True)
    test_images, test_labels = load_split(args.data_dir, "balanced", train=False)
    classes = load_predictor(args.model).class_names

    started = time.perf_counter()
    folder = args.out / "corrections"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    chosen = pick(train_labels, args.per_class, args.seed)
    pngs, inputs = drawn(train_images, chosen)
    for png, model_input, i in zip(pngs, inputs, chosen, strict=True):
        write_correction(folder, model_input, png, classes[int(train_labels[i])], [], 10**9)
    held = pick(test_labels, args.held_out, args.seed + 1)
    _, held_inputs = drawn(test_images, held)
    held_labels = test_labels[held]
    print(
        f"drew {len(chosen)} corrections and {len(held)} held-out drawings in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )

    run = args.out / "run"
    command = [
        sys.executable, str(REPO / "train.py"), f"init_from={args.model.resolve()}",
        f"data.data_dir={args.data_dir.resolve()}", "data.download=false",
        f"data.extra=[{folder.resolve()}]", f"hydra.run.dir={run.resolve()}",
        "trainer.enable_progress_bar=false", *args.overrides,
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, capture_output=True)
    seconds = time.perf_counter() - started
    tuned = run / "checkpoints" / "last.ckpt"

    figures = {
        "fine_tune_overrides": args.overrides,
        "fine_tune_seconds": round(seconds, 1),
        "corrections": len(chosen),
        "held_out_drawings": len(held),
    }
    for name, model in (("before", args.model), ("after", tuned)):
        figures[f"pen_{name}"] = accuracy(model, held_inputs, held_labels)
        figures[f"test_{name}"] = accuracy(model, test_images, test_labels)
    print(json.dumps(figures, indent=2))
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
