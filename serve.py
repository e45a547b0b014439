"""Serve a trained model: a drawing page at / and POST /predict. python serve.py [port=8000]"""

import hydra
from omegaconf import DictConfig

from emnist_lightning.cli import exit_on_user_error

# The task is imported inside main(): `--help` needs no torch.


@hydra.main(version_base="1.3", config_path="conf", config_name="serve")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    from emnist_lightning.serving.server import serve

    serve(cfg)


if __name__ == "__main__":
    main()
