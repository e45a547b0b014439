"""The best trial's experiment config composes into what the trial ran."""

import shlex
from pathlib import Path

import optuna
import pytest
import yaml
from helpers.configs import CONF_DIR
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from emnist_lightning.errors import ConfigError
from emnist_lightning.tuning.results import best_experiment_yaml, chosen_trial, retrain_command


def _trial(params: dict) -> optuna.trial.FrozenTrial:
    distributions = {k: optuna.distributions.FloatDistribution(0.0, 1.0) for k in params}
    return optuna.trial.create_trial(params=params, distributions=distributions, value=0.9)


def test_a_sweep_under_an_experiment_retrains_with_that_experiment(tmp_path: Path) -> None:
    text = best_experiment_yaml(
        _trial({"model.lr": 0.0146, "model.net.dropout": 0.37}),
        ["experiment=fast", "data.batch_size=1024"],
        "fast_knobs",
    )
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "tuned.yaml").write_text(text)
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = compose(
            "train", overrides=["experiment=tuned", f"hydra.searchpath=[file://{tmp_path}]"]
        )
    assert cfg.model.lr == 0.0146 and cfg.model.net.dropout == 0.37  # the trial's values win
    assert cfg.data.batch_size == 1024
    # from experiment=fast
    assert cfg.model.optimizer._target_ == "emnist_lightning.models.optimizers.MuonWithAdamW"
    assert cfg.trainer.max_epochs == 2 and cfg.model.label_smoothing == 0.0


def test_deleted_added_and_forced_keys_reach_the_retrain_as_the_trial_ran_them(
    tmp_path: Path,
) -> None:
    """`~key`, `~key=value`, `+key`, `++key` and a group choice: tuned.yaml plus the retrain
    command's deletions compose into the config the best trial ran with."""
    fixed = [
        "~callbacks.model_checkpoint.enable_version_counter",
        "~callbacks.lr_monitor.logging_interval=epoch",
        "+trainer.gradient_clip_val=0.5",
        "++trainer.accumulate_grad_batches=2",
        "data/augment=affine",
        "data.data_dir=/somewhere",
    ]
    trial = _trial({"model.lr": 0.0146})
    text = best_experiment_yaml(trial, fixed, "keys")
    assert "~" not in yaml.safe_load(text).__repr__()  # no `~key` written as a key
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "tuned.yaml").write_text(text)
    command = shlex.split(retrain_command(tmp_path, fixed))
    assert command[2:4] == ["--config-dir", str(tmp_path)]
    retrain_overrides = command[4:]
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        ran = compose("train", overrides=[*fixed, "model.lr=0.0146"])
        retrained = compose(
            "train",
            overrides=[*retrain_overrides, f"hydra.searchpath=[file://{tmp_path}]"],
        )
    assert OmegaConf.to_container(retrained) == OmegaConf.to_container(ran)
    assert "enable_version_counter" not in retrained.callbacks.model_checkpoint
    assert retrained.trainer.gradient_clip_val == 0.5


def test_a_pick_must_be_a_complete_trial_and_several_objectives_need_one() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    distributions = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for x in (0.2, 0.8):
        study.add_trial(
            optuna.trial.create_trial(params={"x": x}, distributions=distributions, values=[x, x])
        )
    assert chosen_trial(study, None) is None  # no single best of two objectives
    assert chosen_trial(study, 1).params["x"] == 0.8
    with pytest.raises(ConfigError, match=r"pick=5 is not a complete trial .* \[0, 1\]"):
        chosen_trial(study, 5)
