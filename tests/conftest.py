"""Shared fixtures: tiny EMNIST data, composed configs, the real proxy data when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from emnist_fixtures import write_emnist_fixture
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = str(REPO / "conf")
PROXY_DIR = Path(
    os.environ.get("EMNIST_PROXY_DIR", REPO.parent / "shared" / "data" / "emnist-proxy")
)


@pytest.fixture(scope="session")
def tiny_emnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A balanced-split fixture: 47 classes, 12 train and 4 test images each."""
    return write_emnist_fixture(tmp_path_factory.mktemp("emnist"))


def require_proxy_data() -> Path:
    """The real EMNIST-47 proxy data; skips outside CI when absent, fails in CI."""
    if not (PROXY_DIR / "EMNIST" / "raw" / "emnist-balanced-train-images-idx3-ubyte").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"EMNIST proxy data missing at {PROXY_DIR} (set EMNIST_PROXY_DIR)")
        pytest.skip(f"EMNIST proxy data not found at {PROXY_DIR} (set EMNIST_PROXY_DIR)")
    return PROXY_DIR


@pytest.fixture
def proxy_data_dir() -> Path:
    return require_proxy_data()


@pytest.fixture(scope="session")
def proxy_trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch-norm CNN trained 300 steps on the real proxy handwriting (one per session)."""
    from emnist_lightning.training import train

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


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config as the command line would, with Hydra's runtime paths pinned to tmp."""
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
    return cfg


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
