"""Evaluate a trained model on the test split and write its report: python evaluate.py"""

import hydra
from omegaconf import DictConfig

from emnist_lightning.cli import exit_on_user_error

# The task is imported inside main(): `--help` needs no torch.


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> float:
    from emnist_lightning.evaluation.evaluate import evaluate

    return evaluate(cfg)["test/acc"]


if __name__ == "__main__":
    main()
