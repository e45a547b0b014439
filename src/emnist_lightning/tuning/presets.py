"""Named sampler and pruner configs: the choices of hydra/sweeper/sampler and .../pruner."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from emnist_lightning.errors import ConfigError

SAMPLERS: dict[str, dict[str, Any]] = {
    # constant_liar: a trial still running counts as a poor result, so parallel workers do
    # not all crowd around the same promising point.
    "tpe": {
        "_target_": "optuna.samplers.TPESampler",
        "seed": None,
        "n_startup_trials": 5,
        "constant_liar": True,
    },
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
    # Needs the cmaes package: pip install 'emnist-lightning[cmaes]'. Categorical parameters
    # (data.batch_size) are drawn by its independent (random) sampler.
    "cmaes": {
        "_target_": "optuna.samplers.CmaEsSampler",
        "seed": None,
        "n_startup_trials": 1,
        "warn_independent_sampling": False,
    },
}
# Python packages a sampler imports only when it first samples, with the extra that has them.
SAMPLER_PACKAGES: dict[str, tuple[str, str]] = {
    "optuna.samplers.CmaEsSampler": ("cmaes", "cmaes"),
}
PRUNERS: dict[str, dict[str, Any]] = {
    # The default: after any epoch from the first on, stop a trial whose best validation score
    # so far is not in the top quarter of earlier trials' scores at that epoch. Short trials
    # (4 epochs) must be judged after their first epoch for pruning to pay; on the EMNIST-47
    # proxy it saved more than 40% of the default sweep's epochs (README, "Tuning").
    "percentile": {
        "_target_": "optuna.pruners.PercentilePruner",
        "percentile": 25.0,
        "n_startup_trials": 2,
        "n_warmup_steps": 0,
    },
    # Prune a trial whose epoch score is below the median of earlier trials at that epoch.
    "median": {
        "_target_": "optuna.pruners.MedianPruner",
        "n_startup_trials": 3,
        "n_warmup_steps": 1,
    },
    "successive_halving": {
        "_target_": "optuna.pruners.SuccessiveHalvingPruner",
        "min_resource": 1,
        "reduction_factor": 3,
    },
    "hyperband": {
        "_target_": "optuna.pruners.HyperbandPruner",
        "min_resource": 1,
        "max_resource": "auto",
        "reduction_factor": 3,
    },
    "none": {"_target_": "optuna.pruners.NopPruner"},
}


def component_config(value: Any, kind: str) -> dict[str, Any] | None:
    """A sampler or pruner config as a plain dict; a bare name such as
    `hydra.sweeper.pruner=none` means that preset."""
    choices = SAMPLERS if kind == "sampler" else PRUNERS
    if isinstance(value, str):
        if value not in choices:
            raise ConfigError(f"unknown {kind} '{value}': use one of {', '.join(choices)}")
        return dict(choices[value])
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)
    return dict(value) if value else None
