"""A training-free trial: a learning curve in x reported per "epoch", so the pruner can act.

It finds its trial with the plugin's task helper (hydra_plugins.optuna_pruning_sweeper.trial),
as tune.py's trials do.
"""

import hydra
import optuna
from omegaconf import DictConfig

from emnist_lightning.cli import exit_on_user_error
from emnist_lightning.errors import DataFilesError
from hydra_plugins.optuna_pruning_sweeper.trial import current_trial


@hydra.main(version_base="1.3", config_path="conf", config_name="curve")
@exit_on_user_error  # as tune.py: a user error is one line and exit status 2
def main(cfg: DictConfig) -> float:
    trial = current_trial(cfg)
    if cfg.fail:
        raise RuntimeError("every trial breaks on purpose")
    if cfg.user_error:
        raise DataFilesError("EMNIST files missing in nowhere/ (a user error on purpose)")
    value = 0.0
    for epoch in range(cfg.epochs):
        # Rises towards x (+ bonus); the width choice only shifts it a little.
        value = cfg.x * (epoch + 1) / cfg.epochs + 0.01 * cfg.width / 64 + cfg.bonus
        if trial is not None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
    return value


if __name__ == "__main__":
    main()
