"""A generic Hydra app, as a user of the official Optuna sweeper would write it: nothing of
this project, the plugin's own defaults, any float()-able return value.

`returns` picks what comes back: float, float32 (numpy), tensor (0-d torch), pair (a tuple of
two objectives), list (a list of two), text (not a number: the trial fails).
"""

import hydra
import numpy as np
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="sphere")
def main(cfg: DictConfig):
    if cfg.error:
        raise RuntimeError("cfg.error is True")
    value = cfg.x**2 + cfg.y**2 + cfg.get("z", 0) + cfg.get("w", 0)
    if cfg.returns == "float32":
        return np.float32(value)
    if cfg.returns == "tensor":
        import torch

        return torch.tensor(value)
    if cfg.returns == "pair":
        return value, (cfg.x - 5) ** 2 + (cfg.y - 5) ** 2
    if cfg.returns == "list":
        return [value, (cfg.x - 5) ** 2 + (cfg.y - 5) ** 2]
    if cfg.returns == "text":
        return "not a number"
    return float(value)


def configure(cfg: DictConfig, trial) -> None:
    """custom_search_space: z depends on x, and w is a key the config does not have."""
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_z_difference_from_x, x + cfg.max_z_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)


if __name__ == "__main__":
    main()
