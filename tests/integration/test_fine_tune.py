"""Fine-tuning from a model's weights (init_from=) on EMNIST plus users' corrections (data.extra)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emnist_lightning.data.corrections import write_correction
from emnist_lightning.errors import CheckpointError, ConfigError, DataFilesError
from emnist_lightning.inference.model_files import load_checkpoint_model
from emnist_lightning.training.run import build_run, train

QUIET = ("test=false", "logger=none", "trainer.max_epochs=1")


@pytest.fixture(scope="module")
def corrections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corrections")
    for character, column in (("o", 8), ("7", 14)):
        image = torch.zeros(1, 28, 28)
        image[0, 4:24, column : column + 4] = 1.0
        write_correction(folder, image, b"png", character, [], max_bytes=10**6)
    return folder


def test_a_fine_tune_starts_from_the_weights_and_trains_on_the_corrections(
    make_train_cfg, tmp_path: Path, corrections: Path
) -> None:
    train(make_train_cfg(*QUIET, output_dir=tmp_path / "base"))
    base = tmp_path / "base" / "checkpoints" / "last.ckpt"
    cfg = make_train_cfg(
        *QUIET,
        f"init_from={base}",
        f"data.extra=[{corrections}]",
        "data.extra_repeat=3",
        output_dir=tmp_path / "tuned",
    )
    run = build_run(cfg.copy())
    source = load_checkpoint_model(base).model.net.state_dict()
    for key, value in run.model.model.net.state_dict().items():
        assert torch.equal(value, source[key]), key
    run.datamodule.setup("fit")
    images, labels = run.datamodule._train
    added = run.datamodule.train_indices[-6:]
    added_classes = [run.datamodule.characters[int(labels[i])] for i in added]
    assert sorted(added_classes) == ["7"] * 3 + ["O"] * 3
    assert all(int(images[i].sum()) == 20 * 4 * 255 for i in added)  # the stored bars

    metrics = train(cfg)
    assert metrics["epochs"] == 1  # a new run: epoch 0 onwards, not the base run's count
    tuned = load_checkpoint_model(tmp_path / "tuned" / "checkpoints" / "last.ckpt")
    assert any(
        not torch.equal(value, source[key]) for key, value in tuned.model.net.state_dict().items()
    )


def test_init_from_and_ckpt_path_together_are_refused(make_train_cfg, tmp_path: Path) -> None:
    train(make_train_cfg(*QUIET, output_dir=tmp_path / "base"))
    base = tmp_path / "base" / "checkpoints" / "last.ckpt"
    cfg = make_train_cfg(f"init_from={base}", f"ckpt_path={base}", output_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match="pass only one of them"):
        train(cfg)
    other = make_train_cfg(
        f"init_from={base}", "model.net.fc1_neurons=16", output_dir=tmp_path / "o"
    )
    with pytest.raises(CheckpointError, match=r"is another model \(net.fc1_neurons: 196 vs 16"):
        train(other)


def test_a_damaged_corrections_folder_stops_training_before_it_starts(
    make_train_cfg, tmp_path: Path
) -> None:
    folder = tmp_path / "corrections"
    folder.mkdir()
    (folder / "x.json").write_text('{"format_version": 1, "character": "%"}')
    cfg = make_train_cfg(f"data.extra=[{folder}]", output_dir=tmp_path / "run")
    with pytest.raises(DataFilesError, match="x.json: character '%' is not a class"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
    with pytest.raises(ConfigError, match="data.extra='x' is invalid: it must be a list"):
        train(make_train_cfg("data.extra=x", output_dir=tmp_path / "r2"))
