"""The sweeper's config_check for tune.py (set in conf/tune.yaml): a trial's config is checked
as train.py would check it, before any trial is asked, so a bad search range costs no trial."""

from __future__ import annotations

from omegaconf import DictConfig, ListConfig

from emnist_lightning.config_checks import validate_config
from emnist_lightning.tuning.objective import check_objectives, parallel_trials, trial_threads


def check_trial_config(cfg: DictConfig) -> None:
    """Raise a one-line ConfigError for a trial config train() or run_trial would refuse."""
    validate_config(cfg)
    trial_threads(cfg.get("threads_per_trial"), parallel_trials(cfg.hydra))
    direction = cfg.hydra.sweeper.direction
    check_objectives(cfg, len(direction) if isinstance(direction, ListConfig) else 1)
