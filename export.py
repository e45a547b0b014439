"""Export a trained model to ONNX and to the seed's state_dict format: python export.py"""

import hydra
from omegaconf import DictConfig

from emnist_lightning.cli import exit_on_user_error

# The task is imported inside main(): `--help` needs no torch.


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from emnist_lightning.inference.export import export

    export(cfg)


if __name__ == "__main__":
    main()
