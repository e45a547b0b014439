"""benchmarks/pens_benchmark.py scores every model on every set, before and now, in one run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.rendered_chars import require_hand_fonts

from emnist_lightning.data.datamodule import load_split
from emnist_lightning.evaluation.font_set import write_font_set
from emnist_lightning.inference.predictors import load_predictor

REPO = Path(__file__).resolve().parents[2]


def test_pens_benchmark_scores_each_model_on_each_set_before_and_now(
    tiny_emnist: Path, tiny_trained_logs: Path, tmp_path: Path
) -> None:
    fonts = require_hand_fonts(("Humor-Sans.ttf",))
    font_set = write_font_set(tmp_path / "fonts", fonts, split="digits")
    model = tiny_trained_logs / "train" / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    out = tmp_path / "pens.json"
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/pens_benchmark.py",
            "--data-dir",
            str(tiny_emnist),
            "--model",
            f"tiny={model}",
            "--model",
            f"again={model}",
            "--font-set",
            str(font_set),
            "--images",
            "60",
            "--per-class",
            "1",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [row["model"] for row in rows] == ["tiny", "again"]
    columns = [
        "EMNIST test, raw pixels",
        "EMNIST test as PNG, before",
        "EMNIST test as PNG, now",
        "page-like, before",
        "page-like, now",
        "font set, before",
        "font set, now",
    ]
    assert [key for key in rows[0] if key not in ("model", "file")] == columns
    assert rows[0] == {**rows[1], "model": "tiny"}  # the same file scores the same
    # The raw-pixel figure is the model's own accuracy on the same seeded subset.
    images, labels = load_split(tiny_emnist, "balanced", train=False)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:60]
    predicted = load_predictor(model).probabilities(images[order].float().div(255)).argmax(1)
    assert rows[0]["EMNIST test, raw pixels"] == float((predicted == labels[order]).float().mean())
    assert "| tiny |" in result.stdout and "font-set images" in result.stdout


def test_a_model_without_a_name_or_a_damaged_one_is_refused_in_one_line(
    monkeypatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from pens_benchmark import main, named_models

    assert named_models(["fast=a/b.ckpt"]) == [("fast", Path("a/b.ckpt"))]
    with pytest.raises(SystemExit, match=r"^error: --model 'model.ckpt' is not NAME=PATH"):
        named_models(["model.ckpt"])
    damaged = tmp_path / "model.ckpt"
    damaged.write_bytes(b"not a checkpoint")
    argv = ["pens_benchmark.py", "--data-dir", str(tmp_path), "--model", f"x={damaged}"]
    monkeypatch.setattr("sys.argv", argv)
    assert main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {damaged} is not a readable checkpoint")
