"""evaluate.py scores a model file as the training run's own test pass did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.configs import compose_config

from emnist_lightning.evaluation.evaluate import evaluate
from emnist_lightning.training.run import train

TEST_FIGURES = ("test/acc", "test/f1", "test/precision", "test/recall")


def test_evaluate_gives_the_test_figures_the_training_run_reported(
    make_train_cfg, tiny_emnist: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    trained = train(make_train_cfg("trainer.precision=32-true", output_dir=run))
    (best,) = (run / "checkpoints").glob("epoch_*.ckpt")
    cfg = compose_config(
        "evaluate",
        [f"ckpt_path={best}", f"data.data_dir={tiny_emnist}", "data.download=false"],
        tmp_path / "evaluated",
    )
    scored = evaluate(cfg)
    assert set(scored) == set(TEST_FIGURES)
    for name in TEST_FIGURES:
        assert scored[name] == pytest.approx(trained[name], abs=1e-6), name
    written = json.loads((tmp_path / "evaluated" / "metrics.json").read_text())
    assert written == scored
