"""How often the page would ask "O or 0?", and whether the answer meant is then among the
choices: page-like drawings of EMNIST test shapes (benchmarks/page_like.py). Inference only.

    python benchmarks/look_alike_offers.py --data-dir ../shared/data/emnist-proxy \
        --model logs/train/runs/<run>/checkpoints/last.ckpt [--per-class 10]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from fine_tune_pens import pick
from page_like import page_like_png

from emnist_lightning.data.datamodule import load_split
from emnist_lightning.inference.predictors import load_predictor, top_k, view_probabilities
from emnist_lightning.inference.preprocess import load_views
from emnist_lightning.models.look_alikes import look_alikes_to_offer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()
    images, labels = load_split(args.data_dir, "balanced", train=False)
    chosen = pick(labels, args.per_class, seed=1)
    # Read as the server reads them: each drawing's pen-width views, probabilities averaged.
    views = [load_views(io.BytesIO(page_like_png(images[int(i), 0].numpy()))) for i in chosen]
    truth = labels[chosen]
    predictor = load_predictor(args.model)
    ranked = top_k(view_probabilities(predictor, views), predictor.class_names, args.top_k)
    names = predictor.class_names
    right = asked = right_when_asked = meant_offered = 0
    for best, label in zip(ranked, truth, strict=True):
        meant = names[int(label)]
        offered = look_alikes_to_offer(best, predictor.look_alikes)
        right += best[0][0] == meant
        if offered:
            asked += 1
            right_when_asked += best[0][0] == meant
            meant_offered += meant in offered
    n = len(truth)
    print(f"{n} page-like drawings; look-alike pairs in the card: {len(predictor.look_alikes)}")
    print(f"top answer right: {100 * right / n:.1f}%")
    print(f"asked (a look-alike offered): {asked} ({100 * asked / n:.1f}%)")
    print(
        f"  of those, top answer right {right_when_asked}, meant character offered {meant_offered}"
    )
    fixed = right + (meant_offered - right_when_asked)
    print(f"right if the user picks when asked: {100 * fixed / n:.1f}%")


if __name__ == "__main__":
    main()
