"""Where the tests find the repository, its configs and the real proxy data, and how they
compose a config as the command line would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = str(REPO / "conf")
FIXTURES = REPO / "tests" / "fixtures"
PROXY_DIR = Path(
    os.environ.get("EMNIST_PROXY_DIR", REPO.parent / "shared" / "data" / "emnist-proxy")
)


def require_proxy_data() -> Path:
    """The real EMNIST-47 proxy data; skips outside CI when absent, fails in CI."""
    if not (PROXY_DIR / "EMNIST" / "raw" / "emnist-balanced-train-images-idx3-ubyte").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"EMNIST proxy data missing at {PROXY_DIR} (set EMNIST_PROXY_DIR)")
        pytest.skip(f"EMNIST proxy data not found at {PROXY_DIR} (set EMNIST_PROXY_DIR)")
    return PROXY_DIR


def compose_config(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config as the command line would, with Hydra's runtime paths pinned to tmp."""
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
    return cfg
