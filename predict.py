"""Predict characters with a trained model: python predict.py images=my_drawings/ random_test=16"""

import hydra
from omegaconf import DictConfig

from emnist_lightning.cli import exit_on_user_error

# The task is imported inside main(): `--help` needs no torch.


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from emnist_lightning.inference.predict import predict

    summary = predict(cfg)
    if summary["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
