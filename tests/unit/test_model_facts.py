"""Facts with one home: the model's normalisation (model config -> card) and the choice of
model file (conf/model_file, shared by every task that loads a model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.configs import CONF_DIR, compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emnist_lightning.config_checks import validate_config
from emnist_lightning.errors import ConfigError, ModelFileError
from emnist_lightning.models.card import ModelCard

LOADING_TASKS = ("predict", "evaluate", "export", "serve")


def test_the_model_config_sets_the_normalisation_its_card_records(tmp_path: Path) -> None:
    cfg = compose_config("train", ["model.input_mean=0.25", "model.input_std=0.5"], tmp_path)
    model = instantiate(cfg.model)
    assert (model.card.input_mean, model.card.input_std) == (0.25, 0.5)
    assert "mean" not in cfg.data and "std" not in cfg.data
    seed = compose_config("train", ["experiment=seed_recipe"], tmp_path)
    assert (seed.model.input_mean, seed.model.input_std) == (0.5, 0.5)


@pytest.mark.parametrize("model", ["seed_cnn", "bn_cnn", "res_cnn", "bn_cnn_ensemble"])
def test_every_model_config_takes_the_normalisation_from_one_node(
    tmp_path: Path, model: str
) -> None:
    shared = OmegaConf.load(Path(CONF_DIR, "model", "normalization", "emnist.yaml"))
    cfg = compose_config("train", [f"model={model}"], tmp_path)
    assert (cfg.model.input_mean, cfg.model.input_std) == (shared.input_mean, shared.input_std)


@pytest.mark.parametrize("key, value", [("input_std", 0), ("input_std", 20), ("input_mean", 11)])
def test_configs_and_model_files_refuse_the_same_normalisation(
    tmp_path: Path, key: str, value: float
) -> None:
    with pytest.raises(ConfigError, match=rf"^model\.{key}={value} is invalid: it must be"):
        validate_config(compose_config("train", [f"model.{key}={value}"], tmp_path))
    card = ModelCard("seed_cnn", {}, ("a", "b"), 0.2, 0.3).to_dict()
    with pytest.raises(ModelFileError, match=rf"field {key} must be"):
        ModelCard.from_dict({**card, key: value}, "card.json")


def test_an_experiment_file_setting_the_old_data_mean_is_told_where_it_went(
    tmp_path: Path,
) -> None:
    cfg = compose_config("train", ["+data.mean=0.5"], tmp_path)
    with pytest.raises(ConfigError, match=r"^data\.mean is now model\.input_mean .*: set"):
        validate_config(cfg)


def test_every_task_that_loads_a_model_chooses_it_from_one_node(tmp_path: Path) -> None:
    chosen = {task: compose_config(task, [], tmp_path) for task in LOADING_TASKS}
    for task, cfg in chosen.items():
        assert cfg.ckpt_path == "best", task
        # compose_config pins paths.log_dir to the test's folder
        assert cfg.train_runs_dir == f"{tmp_path / 'logs'}/train/runs", task
    evaluate = compose_config("evaluate", ["data.eval_batch_size=7"], tmp_path)
    assert "batch_size" not in evaluate and evaluate.data.eval_batch_size == 7
