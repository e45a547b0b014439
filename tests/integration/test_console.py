"""The console of real commands, read as a user reads it: each line once, no library noise,
one line per epoch instead of a progress bar when the output is not a terminal."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from helpers.console import console_problems, message_lines
from helpers.emnist_fixtures import write_emnist_fixture

from emnist_lightning.inference.which_model import read_provenance

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, *overrides: str) -> str:
    """Run an entry script as a user would (output to a pipe, not a terminal); its console."""
    result = subprocess.run(
        [sys.executable, script, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 2-epoch run with the default console settings (progress bar and model summary on)."""
    root = tmp_path_factory.mktemp("console")
    data = write_emnist_fixture(root / "data", train_per_class=12, test_per_class=2)
    logs = root / "logs"
    console = _run(
        "train.py",
        f"data.data_dir={data}",
        "data.download=false",
        "data.batch_size=64",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        f"paths.log_dir={logs}",
    )
    return logs, console


def test_train_console_prints_each_line_once_without_library_noise(trained) -> None:
    _, console = trained
    assert console_problems(console) == []
    lines = message_lines(console)
    assert sum("GPU available" in line for line in lines) == 1
    assert sum(line.startswith("| Name") for line in lines) == 1  # the model summary, once
    assert sum(line.startswith("test/acc ") for line in lines) == 1  # one results table


def test_train_without_a_terminal_prints_one_line_per_epoch(trained) -> None:
    _, console = trained
    epochs = [line for line in message_lines(console) if line.startswith("Epoch ")]
    assert [line.split(" (")[0] for line in epochs] == ["Epoch 1/2", "Epoch 2/2"]
    assert all("val/acc " in line and "train/loss " in line for line in epochs)


@pytest.mark.slow
def test_export_says_what_it_exported_and_nothing_of_the_exporter(trained, tmp_path) -> None:
    logs, _ = trained
    out = tmp_path / "export"
    console = _run("export.py", f"paths.log_dir={logs}", f"hydra.run.dir={out}")
    assert console_problems(console) == []
    lines = message_lines(console)
    exported = next(line for line in lines if line.startswith("Exported "))
    assert Path(exported.removeprefix("Exported ").rstrip(":")).is_file()
    for name in ("model.onnx", "character_recognition.torch"):
        assert any(str(out / name) in line for line in lines), name
        assert (out / name).is_file()
    # The ONNX file carries the checkpoint's training record.
    assert read_provenance(out / "model.onnx") == read_provenance(Path(exported[9:-1]))


@pytest.mark.slow
def test_predict_names_the_model_it_uses_first_and_prints_nothing_twice(trained, tmp_path) -> None:
    logs, _ = trained
    data = next(logs.parent.glob("data"))
    console = _run(
        "predict.py",
        f"paths.log_dir={logs}",
        f"data.data_dir={data}",
        "data.download=false",
        "random_test=8",
        f"hydra.run.dir={tmp_path / 'predict'}",
    )
    assert console_problems(console) == []
    model, rule, record = message_lines(console)[:3]
    best = Path(model.removeprefix("Model: "))
    assert best.is_file() and best.parent.name == "checkpoints"
    assert (
        rule
        == f"chosen by ckpt_path=best: the best checkpoint of the newest finished run under {logs / 'train' / 'runs'}"
    )
    assert record.startswith("experiment none (default recipe), run ")
    assert f"validation accuracy {read_provenance(best).val_acc:.2%}" in record


def test_checkpoint_folder_warning_only_for_another_runs_files(make_train_cfg, tmp_path) -> None:
    from emnist_lightning.training.run import train

    def warnings_of(*overrides: str) -> list[str]:
        with pytest.warns() as caught:
            warnings.warn("marker", UserWarning, stacklevel=1)  # pytest.warns needs one
            train(make_train_cfg("test=false", *overrides, output_dir=tmp_path / "run"))
        return [str(w.message) for w in caught if "Checkpoint directory" in str(w.message)]

    assert warnings_of("trainer.max_epochs=1") == []  # only our .lock was there
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert warnings_of(f"ckpt_path={last}", "trainer.max_epochs=2") == []  # resumed in place
    (warned,) = warnings_of("trainer.max_epochs=1")  # a fresh run into a used folder
    assert "last.ckpt" in warned
