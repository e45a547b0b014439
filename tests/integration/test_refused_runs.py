"""Documented paths that used to fail: debug=overfit, and runs refused in one line that must
leave no run folder behind."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.configs import REPO, compose_config
from PIL import Image, ImageDraw

from emnist_lightning.data.idx_files import expected_files, raw_folder
from emnist_lightning.errors import CheckpointError, ConfigError, DataFilesError, UserError
from emnist_lightning.inference.export import export
from emnist_lightning.inference.predict import predict
from emnist_lightning.training.checkpoint_io import AtomicCheckpointIO
from emnist_lightning.training.run import train


def test_debug_overfit_trains_and_validates(make_train_cfg) -> None:
    metrics = train(make_train_cfg("debug=overfit", "trainer.max_epochs=2", "test=false"))
    assert metrics["epochs"] == 2


def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", "trainer.max_epochs=1", "logger=none", *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.val_fraction=0.001"], "leaves no validation images"),
        (
            ["experiment=fast", "data.batch_size=64", "++trainer.limit_train_batches=5"],
            "one-cycle warm-up of a single step",
        ),
    ],
    ids=["val_fraction", "one_cycle"],
)
@pytest.mark.slow
def test_a_run_refused_once_fitting_starts_leaves_no_run_folder(
    overrides: list[str], message: str, tiny_emnist: Path, tmp_path: Path
) -> None:
    # Both are found when Lightning starts fitting, after the run wrote its config,
    # checkpoint lock and fit status.
    line = _one_error_line(
        _cli(
            tmp_path,
            f"data.data_dir={tiny_emnist}",
            "data.download=false",
            f"paths.log_dir={tmp_path}",
            *overrides,
        )
    )
    assert message in line
    assert not list((tmp_path / "train" / "runs").glob("*"))


def test_an_empty_log_dir_is_refused_before_any_folder_is_made(tmp_path: Path) -> None:
    line = _one_error_line(_cli(tmp_path, "paths.log_dir="))
    assert line.startswith("error: paths.log_dir is empty")


def test_a_training_file_with_no_images_is_refused_in_one_line(
    tiny_emnist: Path, make_train_cfg, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_emnist, data)
    images, labels = expected_files("balanced", train=True)
    (raw_folder(data) / images).write_bytes(struct.pack(">IIII", 2051, 0, 28, 28))
    (raw_folder(data) / labels).write_bytes(struct.pack(">II", 2049, 0))
    with pytest.raises(DataFilesError, match=r"train-images-idx3-ubyte holds no images"):
        train(make_train_cfg(data_dir=data, output_dir=tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


# -- predict.py and export.py ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tiny_trained_logs: Path) -> Path:
    return tiny_trained_logs / "train" / "runs" / "tiny"


def _predict_cfg(run: Path, tmp_path: Path, *overrides: str):
    ckpt = run / "checkpoints" / "last.ckpt"
    return compose_config("predict", [f"ckpt_path={ckpt}", *overrides], tmp_path / "out")


def test_predict_skips_fifos_and_refuses_an_empty_folder(tiny_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("L", (28, 28), 255).save(folder / "blank.png")
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).line((32, 6, 32, 58), fill=0, width=6)
    image.save(folder / "bar.png")
    os.mkfifo(folder / "pipe.png")  # opening it for reading would wait for a writer for ever
    summary = predict(_predict_cfg(tiny_run, tmp_path, f"images={folder}"))
    assert summary["predicted"] == 1 and summary["failed"] == 1  # bar; blank has no ink
    named = predict(_predict_cfg(tiny_run, tmp_path, f"images={folder / 'pipe.png'}"))
    assert named["failed"] == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"no image files in .*empty: pass image files"):
        predict(_predict_cfg(tiny_run, tmp_path, f"images={empty}"))


def test_predict_caps_random_test(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"random_test=100000 is invalid"):
        predict(_predict_cfg(tiny_run, tmp_path, "random_test=100000"))


def test_export_formats_onnx_is_one_format(tiny_run: Path, tmp_path: Path) -> None:
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    cfg = compose_config("export", [f"ckpt_path={ckpt}", "formats=onnx"], tmp_path / "out")
    assert set(export(cfg)) == {"onnx"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix) == ["model.onnx"]


# -- a full disk -----------------------------------------------------------------------------
def test_a_full_disk_is_said_in_words_when_a_checkpoint_is_saved(tmp_path: Path) -> None:
    # /dev/full answers every write with ENOSPC, as a full disk does.
    target = tmp_path / "last.ckpt"
    (tmp_path / f".last.ckpt.{os.getpid()}.partial").symlink_to("/dev/full")
    with pytest.raises(CheckpointError, match=r"last.ckpt \(No space left on device\)"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}}, target)
    assert not target.exists()


def _limit_file_size() -> None:
    """Files over 150 KB cannot be written (EFBIG, as from a quota or a small disk)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))


# train.py's save goes through the same writer as the /dev/full test above (slow: it trains).
@pytest.mark.parametrize("script", [pytest.param("train.py", marks=pytest.mark.slow), "export.py"])
def test_no_room_to_write_is_one_line_at_the_command_line(
    script: str, tiny_run: Path, tiny_emnist: Path, tmp_path: Path
) -> None:
    args = {
        "train.py": [
            f"data.data_dir={tiny_emnist}",
            "data.download=false",
            "trainer.max_epochs=1",
            "logger=none",
        ],
        "export.py": [f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}"],
    }[script]
    result = subprocess.run(
        [sys.executable, script, *args, f"paths.log_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size,
    )
    assert "File too large" in _one_error_line(result)


def test_a_resume_refused_once_fitting_starts_keeps_the_run_finished(
    make_train_cfg, tmp_path: Path
) -> None:
    from emnist_lightning.errors import UserError
    from emnist_lightning.inference.model_files import FINISHED, fit_status

    run = tmp_path / "run"
    train(make_train_cfg("trainer.max_epochs=1", "test=false", output_dir=run))
    assert fit_status(run / "checkpoints") == FINISHED
    last = run / "checkpoints" / "last.ckpt"
    # Refused by Lightning's data checks inside fit, before this attempt writes a checkpoint.
    with pytest.raises(UserError, match="leaves no validation images"):
        train(
            make_train_cfg(
                f"ckpt_path={last}", "data.val_fraction=0.001", "test=false", output_dir=run
            )
        )
    assert fit_status(run / "checkpoints") == FINISHED  # still what ckpt_path=best chooses
