"""Shared fixtures: tiny EMNIST data, composed configs, the real proxy data when present."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.configs import PROXY_DIR, compose_config, require_proxy_data
from helpers.emnist_fixtures import write_emnist_fixture
from omegaconf import DictConfig


@pytest.fixture(scope="session")
def tiny_emnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A balanced-split fixture: 47 classes, 12 train and 4 test images each."""
    return write_emnist_fixture(tmp_path_factory.mktemp("emnist"))


@pytest.fixture
def proxy_data_dir() -> Path:
    return require_proxy_data()


@pytest.fixture(scope="session")
def proxy_trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch-norm CNN trained 300 steps on the real proxy handwriting (one per session)."""
    from emnist_lightning.training.run import train

    require_proxy_data()
    run = tmp_path_factory.mktemp("proxy_trained") / "run"
    overrides = [
        f"data.data_dir={PROXY_DIR}",
        "data.download=false",
        "model=bn_cnn",
        "model.net.widths=[16,32]",
        "data.batch_size=128",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=150",
        "trainer.enable_progress_bar=false",
        "++callbacks.progress_bar=null",
        "trainer.accelerator=cpu",
    ]
    train(compose_config("train", overrides, run))
    return run


@pytest.fixture
def make_train_cfg(tiny_emnist: Path, tmp_path: Path):
    """Build a fast train config on the tiny fixture; extra overrides win."""

    def make(
        *overrides: str, output_dir: Path | None = None, data_dir: Path | None = None
    ) -> DictConfig:
        base = [
            f"data.data_dir={data_dir or tiny_emnist}",
            "data.download=false",
            "data.batch_size=64",
            "trainer.max_epochs=2",
            "trainer.accelerator=cpu",
            "trainer.devices=1",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "++callbacks.progress_bar=null",
        ]
        return compose_config("train", [*base, *overrides], output_dir or tmp_path / "run")

    return make


@pytest.fixture(scope="session")
def tiny_trained_logs(tiny_emnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A logs folder holding one finished 1-epoch run on the tiny fixture
    (train/runs/tiny): the model file that predict, export and server tests read. Read it,
    never write into it."""
    from emnist_lightning.training.run import train

    logs = tmp_path_factory.mktemp("tiny_trained") / "logs"
    overrides = [
        f"data.data_dir={tiny_emnist}",
        "data.download=false",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "++callbacks.progress_bar=null",
        "test=false",
        "logger=none",
    ]
    train(compose_config("train", overrides, logs / "train" / "runs" / "tiny"))
    return logs
