"""Trial 1 raises, trial 2 returns NaN, every other trial returns x: the sweep must go on."""

import math

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="flaky")
def main(cfg: DictConfig) -> float:
    if cfg.trial_number == 1:
        raise RuntimeError("this trial breaks on purpose")
    if cfg.trial_number == 2:
        return math.nan
    return float(cfg.x)


if __name__ == "__main__":
    main()
