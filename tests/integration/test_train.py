import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.emnist_fixtures import write_emnist_fixture

from emnist_lightning.errors import CheckpointError
from emnist_lightning.inference.model_files import (
    CARD_NAME,
    STATE_DICT_NAME,
    load_checkpoint_model,
    newest_last_checkpoint,
)
from emnist_lightning.models.nets import SeedCNN
from emnist_lightning.training.run import train

REPO = Path(__file__).resolve().parents[2]
REPORTED = ("val/acc_best", "test/loss", "test/acc", "test/f1", "test/precision", "test/recall")


def test_train_fits_tests_and_writes_every_output(make_train_cfg, tmp_path: Path) -> None:
    cfg = make_train_cfg(output_dir=tmp_path / "run")
    metrics = train(cfg)
    assert set(REPORTED) <= set(metrics)
    # The glyph fixture is easy: two epochs must do far better than chance (1/47).
    assert metrics["test/acc"] > 0.2 and metrics["val/acc_best"] > 0.2
    assert metrics["epochs"] == 2
    run = tmp_path / "run"
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "checkpoints").glob("epoch_*.ckpt"))) == 1
    assert (run / "csv" / "metrics.csv").read_text().count("\n") > 2
    assert (run / "config_resolved.yaml").is_file()
    state_dict = torch.load(run / STATE_DICT_NAME, weights_only=True)
    net = SeedCNN(num_classes=47, fc1_neurons=196)
    net.load_state_dict(state_dict)  # the seed script's layout, key for key
    card = json.loads((run / CARD_NAME).read_text())
    assert "".join(card["class_names"]) == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"
    assert card["net"] == "seed_cnn" and card["net_params"] == {
        "fc1_neurons": 196,
        "dropout": pytest.approx(0.3397, abs=1e-4),
    }


def test_checkpoint_loads_weights_only_and_predicts_without_datamodule(
    make_train_cfg, tmp_path, tiny_emnist
) -> None:
    cfg = make_train_cfg("trainer.max_epochs=1", "test=false", output_dir=tmp_path / "run")
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, weights_only=True)
    assert raw["model_card"]["class_names"][10] == "A"
    loaded = load_checkpoint_model(ckpt)
    images = torch.rand(5, 1, 28, 28)
    probabilities = loaded.model(images).softmax(dim=1)
    assert probabilities.shape == (5, 47)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(5))
    assert torch.equal(loaded.model.net.fc2.weight, raw["state_dict"]["model.net.fc2.weight"])


def test_training_without_a_logger_still_checkpoints(make_train_cfg, tmp_path: Path) -> None:
    metrics = train(
        make_train_cfg("logger=none", "trainer.max_epochs=1", output_dir=tmp_path / "run")
    )
    assert metrics["epochs"] == 1
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "run" / "csv").exists()


class _CaptureAtTrainStart(L.Callback):
    """Records what a (possibly resumed) fit starts from."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        optimizer_state = trainer.optimizers[0].state_dict()["state"]
        self.epoch = trainer.current_epoch
        self.global_step = trainer.global_step
        self.exp_avg = optimizer_state[0]["exp_avg"].clone() if optimizer_state else None
        self.best_score = trainer.checkpoint_callback.best_model_score
        self.best_val_acc = float(pl_module.best_val_acc)


def test_resume_restores_epoch_optimizer_and_best_score(make_train_cfg, tmp_path: Path) -> None:
    first = train(make_train_cfg("test=false", output_dir=tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)

    capture = _CaptureAtTrainStart()
    resumed = train(
        make_train_cfg(
            "trainer.max_epochs=3", f"ckpt_path={last}", output_dir=tmp_path / "resumed"
        ),
        extra_callbacks=[capture],
    )
    assert capture.epoch == 2 and capture.global_step == saved["global_step"]
    assert torch.equal(capture.exp_avg, saved["optimizer_states"][0]["state"][0]["exp_avg"])
    assert capture.best_val_acc == pytest.approx(first["val/acc_best"])
    assert float(capture.best_score) == pytest.approx(first["val/acc_best"])

    straight = train(make_train_cfg("trainer.max_epochs=3", output_dir=tmp_path / "straight"))
    assert resumed["epochs"] == straight["epochs"] == 3
    assert resumed["global_step"] == straight["global_step"]
    assert resumed["val/acc_best"] >= first["val/acc_best"]
    # The resumed run keeps checkpointing into the run it continues.
    assert torch.load(last, weights_only=True)["epoch"] == saved["epoch"] + 1


def test_ckpt_path_last_resumes_the_newest_run(make_train_cfg, tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "train" / "runs"
    for age, name in ((100, "older"), (0, "newer")):
        train(make_train_cfg("trainer.max_epochs=1", "test=false", output_dir=logs / name))
        last = logs / name / "checkpoints" / "last.ckpt"
        stamp = time.time() - age
        os.utime(last, (stamp, stamp))
    assert newest_last_checkpoint(logs) == logs / "newer" / "checkpoints" / "last.ckpt"
    cfg = make_train_cfg(
        "trainer.max_epochs=2", "ckpt_path=last", "test=false", output_dir=tmp_path / "resumed"
    )
    cfg.paths.log_dir = str(tmp_path / "logs")
    metrics = train(cfg)
    assert metrics["epochs"] == 2
    assert torch.load(logs / "newer" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert torch.load(logs / "older" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0


def test_ckpt_path_last_without_runs_says_what_to_do(make_train_cfg, tmp_path: Path) -> None:
    cfg = make_train_cfg("ckpt_path=last", output_dir=tmp_path / "run")
    with pytest.raises(
        CheckpointError, match="found no checkpoints/last.ckpt under .*train a run first"
    ):
        train(cfg)


def test_checkpoint_of_another_class_count_is_refused(make_train_cfg, tmp_path: Path) -> None:
    train(make_train_cfg("trainer.max_epochs=1", "test=false", output_dir=tmp_path / "balanced"))
    digits = write_emnist_fixture(
        tmp_path / "digits_data", split="digits", train_per_class=4, test_per_class=1
    )
    ckpt = tmp_path / "balanced" / "checkpoints" / "last.ckpt"
    cfg = make_train_cfg(
        "data.split=digits", f"ckpt_path={ckpt}", data_dir=digits, output_dir=tmp_path / "r"
    )
    with pytest.raises(
        CheckpointError, match="trained with another model or data .classes: 47 vs 10"
    ):
        train(cfg)


def test_a_file_that_is_not_a_checkpoint_is_refused(make_train_cfg, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="bogus.ckpt is not a readable checkpoint"):
        train(make_train_cfg(f"ckpt_path={bogus}", output_dir=tmp_path / "run"))


def _train_cli(*overrides: str, **kwargs) -> list[str]:
    return [
        sys.executable,
        "train.py",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "++callbacks.progress_bar=null",
        *overrides,
    ]


def test_train_py_command_line_trains_tests_and_reports(tiny_emnist: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        _train_cli(
            f"data.data_dir={tiny_emnist}",
            "data.download=false",
            "trainer.max_epochs=1",
            f"paths.log_dir={tmp_path}",
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    for name in REPORTED:
        assert name in output
    (run,) = (tmp_path / "train" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(REPORTED) <= set(metrics)
    assert (run / ".hydra" / "overrides.yaml").is_file()


@pytest.mark.slow
def test_kill_9_mid_training_leaves_a_loadable_last_checkpoint_that_resumes(tmp_path: Path) -> None:
    data = write_emnist_fixture(tmp_path / "data", train_per_class=60, test_per_class=2)
    common = [
        f"data.data_dir={data}",
        "data.download=false",
        "data.batch_size=8",
        f"paths.log_dir={tmp_path / 'logs'}",
        "test=false",
    ]
    process = subprocess.Popen(
        _train_cli(*common, "trainer.max_epochs=50"),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = tmp_path / "logs" / "train" / "runs"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(runs.glob("*/checkpoints/last.ckpt")):
            time.sleep(0.05)
        assert list(runs.glob("*/checkpoints/last.ckpt")), "no last.ckpt was written"
        time.sleep(1.0)  # inside a later epoch
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    (last,) = runs.glob("*/checkpoints/last.ckpt")
    killed_at = torch.load(last, weights_only=True)
    assert killed_at["global_step"] > 0

    result = subprocess.run(
        _train_cli(*common, f"trainer.max_epochs={killed_at['epoch'] + 2}", "ckpt_path=last"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = torch.load(last, weights_only=True)
    steps_per_epoch = killed_at["global_step"] // (killed_at["epoch"] + 1)
    assert resumed["global_step"] == killed_at["global_step"] + steps_per_epoch


def test_ema_checkpoints_hold_the_averaged_weights_and_load_for_inference(
    make_train_cfg, tmp_path: Path
) -> None:
    cfg = make_train_cfg(
        "callbacks=ema",
        "callbacks.ema.update_starting_at_epoch=0",
        "callbacks.ema.decay=0.9",
        "test=false",
        output_dir=tmp_path / "run",
    )
    train(cfg)
    raw = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    averaged, current = raw["state_dict"], raw["current_model_state"]
    key = "model.net.fc2.weight"
    assert not torch.equal(averaged[key], current[key])  # the average, not the last step
    loaded = load_checkpoint_model(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert torch.equal(loaded.model.net.fc2.weight, averaged[key])


def test_a_partial_test_pass_skips_the_report_instead_of_failing(
    make_train_cfg, tmp_path: Path
) -> None:
    metrics = train(
        make_train_cfg(
            "trainer.max_epochs=1", "trainer.limit_test_batches=1", "data.eval_batch_size=16",
            output_dir=tmp_path / "run",
        )
    )  # fmt: skip
    assert "test/acc" in metrics and (tmp_path / "run" / "metrics.json").is_file()
    assert not (tmp_path / "run" / "report").exists()
