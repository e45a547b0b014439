"""Optuna sweeps with pruning over the training task: python tune.py -m"""

import hydra
from omegaconf import DictConfig

from emnist_lightning.cli import exit_on_user_error

# The task is imported inside main(): `--help` needs no torch.


@hydra.main(version_base="1.3", config_path="conf", config_name="tune")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    from emnist_lightning.tuning.objective import run_trial

    return run_trial(cfg)


if __name__ == "__main__":
    main()
