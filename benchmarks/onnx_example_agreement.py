"""How often the stranger's ONNX example (docs/using-a-model.md) answers as predict.py does.

The example runs an exported model with only onnxruntime, numpy and Pillow, and a short
`emnist_look` function instead of predict.py's preprocessing (which also redraws pens thinner
or thicker than EMNIST's). This runs the example, extracted from the page, as its own process
on the rendered font set (evaluation/font_set.py, written to data/font_set on first use) and
counts the files where its character equals predict.py's.

    python benchmarks/onnx_example_agreement.py --onnx <model.onnx>
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from emnist_lightning.evaluation.font_set import (  # noqa: E402
    find_fonts,
    read_font_set,
    write_font_set,
)
from emnist_lightning.inference.predictors import load_predictor  # noqa: E402
from emnist_lightning.inference.preprocess import load_character  # noqa: E402

DOC = REPO / "docs" / "using-a-model.md"
MARKER = "<!-- onnx-example -->"


def example_code() -> str:
    """The python block after MARKER in the page: what a reader copies."""
    text = DOC.read_text()
    block = text[text.index(MARKER) :].split("```python\n", 1)[1]
    return block.split("```", 1)[0]


def example_answers(onnx: Path, images: list[Path]) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "example.py"
        script.write_text(example_code())
        out = subprocess.run(
            [sys.executable, str(script), str(onnx), *map(str, images)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return dict(line.rsplit(": ", 1) for line in out.splitlines())


def predict_answers(onnx: Path, images: list[Path]) -> dict[str, str]:
    import torch

    predictor = load_predictor(onnx)
    batch = torch.stack([load_character(path) for path in images])
    best = predictor.probabilities(batch).argmax(1)
    return {str(p): predictor.class_names[int(i)] for p, i in zip(images, best, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--font-set", type=Path, default=REPO / "data" / "font_set")
    args = parser.parse_args()
    if not (args.font_set / "labels.csv").is_file():
        write_font_set(args.font_set, find_fonts())
    samples = read_font_set(args.font_set)
    paths = [s.path for s in samples]
    ours, theirs = predict_answers(args.onnx, paths), example_answers(args.onnx, paths)
    agree = Counter()
    total = Counter()
    for sample in samples:
        group = f"{sample.pen} pen"
        total[group] += 1
        agree[group] += ours[str(sample.path)] == theirs[str(sample.path)]
    for group in sorted(total):
        print(f"{group}: {agree[group]}/{total[group]} ({agree[group] / total[group]:.1%}) agree")
    print(f"all: {sum(agree.values())}/{sum(total.values())} agree")


if __name__ == "__main__":
    main()
