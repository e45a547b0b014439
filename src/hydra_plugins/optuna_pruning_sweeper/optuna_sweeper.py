"""`hydra/sweeper=optuna_pruning`: a thin Sweeper that imports its implementation on first use.

Hydra imports every public module of the hydra_plugins namespace at every start of every
entry point, so this module and config.py import nothing heavy; Optuna and the rest load in
`_impl` only when a sweep runs, as in Hydra's own Optuna plugin.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

# Hydra imports every module of the plugin package; importing config here registers it too.
from . import config as _config  # noqa: F401


class PruningOptunaSweeper(Sweeper):
    """Runs an Optuna study whose trials are Hydra jobs (that can be pruned mid-run)."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: Any | None,
        custom_search_space: str | None = None,
        pruner: Any = None,
        plots: bool = False,
        trial_number_key: str | None = None,
        config_check: str | None = None,
        results_callback: str | None = None,
        heartbeat_interval: int = 10,
        grace_period: int | None = 60,
    ) -> None:
        from ._impl import PruningOptunaSweeperImpl

        self.sweeper = PruningOptunaSweeperImpl(
            sampler=sampler,
            pruner=pruner,
            direction=direction,
            storage=storage,
            study_name=study_name,
            n_trials=n_trials,
            n_jobs=n_jobs,
            max_failure_rate=max_failure_rate,
            params=params,
            custom_search_space=custom_search_space,
            plots=plots,
            trial_number_key=trial_number_key,
            config_check=config_check,
            results_callback=results_callback,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
        )

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
