"""Bad values on the real command line of each entry point: one `error:` line, exit 2, no run
folder (tests/unit/test_config_checks.py tries every key in-process through the same check)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.configs import REPO


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["train.py", "seed=abc"], "error: seed='abc' is invalid: it must be a whole number in"),
        pytest.param(
            ["train.py", "callbacks.model_checkpoint.monitor=val/nope"],
            "error: callbacks.model_checkpoint.monitor='val/nope' is invalid: it must be one of",
            marks=pytest.mark.slow,
        ),
        (["tune.py", "-m", "trainer.check_val_every_n_epoch=0"], "error: trainer.check_val"),
        (["serve.py", "port=abc"], "error: port='abc' is invalid: it must be a whole number"),
        pytest.param(
            ["export.py", "formats=7"],
            "error: formats=7 is invalid: it must be a list of values",
            marks=pytest.mark.slow,
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
@pytest.mark.slow
def test_a_bad_value_is_one_line_and_exit_2_leaving_no_run_folder(
    command: list[str], message: str, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    result = subprocess.run(
        [sys.executable, *command, f"paths.log_dir={logs}", "data.download=false"]
        if command[0] in ("train.py", "tune.py")
        else [sys.executable, *command, f"paths.log_dir={logs}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert "Traceback" not in result.stdout + result.stderr
    assert not logs.exists(), list(logs.rglob("*"))  # not even the folders above the run's


def test_resuming_weights_that_do_not_fit_their_own_card_is_one_line(make_train_cfg) -> None:
    from emnist_lightning.errors import ModelFileError
    from emnist_lightning.training.run import train

    cfg = make_train_cfg(
        "trainer.max_epochs=1", "trainer.limit_train_batches=1", "test=false", "logger=none"
    )
    train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    name = next(k for k in checkpoint["state_dict"] if k.endswith("weight"))
    checkpoint["state_dict"][name] = torch.zeros(3, 3)
    torch.save(checkpoint, last)
    before = last.read_bytes()
    resumed = make_train_cfg("trainer.max_epochs=2", f"ckpt_path={last}", "logger=none")
    with pytest.raises(ModelFileError) as refused:
        train(resumed)
    message = str(refused.value)
    assert "\n" not in message and "the weights do not fit the model card's net" in message
    assert last.read_bytes() == before  # the checkpoint is kept as it was


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            # 5 steps: OneCycleLR's warm-up of 0.2 x 5 = 1 step divided by zero.
            ("experiment=fast", "data.batch_size=8", "trainer.limit_train_batches=1"),
            "model.scheduler.pct_start=0.2 of 5 training steps is a one-cycle warm-up",
        ),
        (("trainer.limit_train_batches=0.001",), "Lightning refused the trainer settings"),
    ],
    ids=["fast with 5 steps", "a fraction under one batch"],
)
def test_settings_only_the_data_shows_unworkable_are_one_line_before_a_step(
    make_train_cfg, overrides: tuple[str, ...], message: str
) -> None:
    from emnist_lightning.errors import ConfigError
    from emnist_lightning.training.run import train

    cfg = make_train_cfg(*overrides, "trainer.max_epochs=5", "test=false", "logger=none")
    with pytest.raises(ConfigError) as refused:
        train(cfg)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert not list((Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt"))
