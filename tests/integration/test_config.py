import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from helpers.configs import compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emnist_lightning.data.datamodule import EMNISTDataModule
from emnist_lightning.errors import ConfigError
from emnist_lightning.models.classifier import CharacterClassifier
from emnist_lightning.training.run import build_trainer, train

REPO = Path(__file__).resolve().parents[2]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))


def _build_all(cfg) -> None:
    OmegaConf.resolve(cfg)
    dm = instantiate(cfg.data)
    assert isinstance(dm, EMNISTDataModule)
    model = instantiate(cfg.model, num_classes=dm.num_classes, class_names=dm.characters)
    assert isinstance(model, CharacterClassifier)
    for group in ("callbacks", "logger"):
        for node in (cfg.get(group) or {}).values():
            if node:
                instantiate(node)


@pytest.mark.parametrize(
    "group", ["model", "callbacks", "logger", "experiment", "debug", "data/augment"]
)
@pytest.mark.slow
def test_every_option_of_a_group_composes_and_instantiates(make_train_cfg, group: str) -> None:
    options = _options(group)
    assert options, f"conf/{group} is empty"
    for option in options:
        cfg = make_train_cfg(f"{group}={option}")
        _build_all(cfg)


@pytest.mark.parametrize("option", _options("trainer"))
def test_every_trainer_option_composes(tmp_path: Path, option: str) -> None:
    cfg = compose_config("train", [f"trainer={option}"], tmp_path)
    OmegaConf.resolve(cfg)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    if option in ("gpu",):
        assert cfg.trainer.accelerator == "gpu"
        return
    if option == "ddp":
        cfg.trainer.accelerator = "cpu"
    trainer = build_trainer(cfg.trainer, [], [])
    assert isinstance(trainer, L.Trainer)


def test_seed_recipe_experiment_sets_the_seed_hyperparameters(tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=seed_recipe"], tmp_path)
    assert cfg.model.lr == pytest.approx(0.00047, rel=1e-2)
    assert cfg.model.net.dropout == pytest.approx(0.34, rel=1e-2)
    assert cfg.model.net.fc1_neurons == 196
    assert cfg.data.batch_size == 256
    assert cfg.model.net.name == "seed_cnn"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.lr=0", "model.lr"),
        ("model.lr=-1e-3", "model.lr"),
        ("model.lr=inf", "model.lr"),
        ("model.lr=nan", "model.lr"),
        ("model.net.dropout=1.0", "model.net.dropout"),
        ("model.net.dropout=-0.1", "model.net.dropout"),
        ("model.net.fc1_neurons=0", "model.net.fc1_neurons"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.split=everything", "data.split"),
    ],
)
def test_invalid_values_fail_before_training_naming_the_key(
    make_train_cfg, override: str, key: str
) -> None:
    cfg = make_train_cfg(override)
    with pytest.raises(ConfigError, match=f"^{key}=.* is invalid: it must be"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


@pytest.mark.slow
def test_command_line_prints_one_error_line_and_exits_2(tiny_emnist: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            f"data.data_dir={tiny_emnist}",
            "data.download=false",
            "model.net.dropout=1.5",
            f"paths.log_dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert error_lines == [
        "error: model.net.dropout=1.5 is invalid: it must be a finite number in [0.0, 1.0)"
    ]


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_trains_a_few_batches(make_train_cfg, experiment: str) -> None:
    metrics = train(
        make_train_cfg(
            f"experiment={experiment}",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=1",
            "test=false",
            "logger=none",
        )
    )
    assert metrics["global_step"] == 3
