"""The best trial's experiment config composes into what the trial ran."""

from pathlib import Path

import optuna
from helpers.configs import CONF_DIR
from hydra import compose, initialize_config_dir

from emnist_lightning.tuning.results import best_experiment_yaml


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
