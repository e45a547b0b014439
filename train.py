"""Train, validate, test and checkpoint a character recognizer: python train.py --help"""

import hydra
from omegaconf import DictConfig

from emnist_lightning.cli import exit_on_user_error

# The task is imported inside main(): `--help` needs no torch.


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    from emnist_lightning.training.run import train

    return train(cfg)["val/acc_best"]


if __name__ == "__main__":
    main()
