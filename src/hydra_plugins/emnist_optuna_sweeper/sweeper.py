"""`hydra/sweeper=optuna_pruning`: a thin Sweeper that imports its implementation on first use.

Hydra imports every public module of the hydra_plugins namespace at every start of every
entry point (predict.py --help included), so this module and config.py import nothing heavy;
Optuna and the rest load in `_impl` only when a sweep runs, as in Hydra's own Optuna plugin.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

# Hydra imports every module of the plugin package; importing config here registers it too.
from . import config as _config  # noqa: F401


class PruningOptunaSweeper(Sweeper):
    """Runs an Optuna study whose trials are Hydra jobs that can be pruned mid-training."""

    def __init__(
        self,
        sampler: Any,
        pruner: Any,
        direction: str,
        study_name: str,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        params: Any | None,
        plots: bool = True,
        max_failure_rate: float = 0.5,
        heartbeat_interval: int = 10,
        grace_period: int | None = 60,
    ) -> None:
        from ._impl import PruningOptunaSweeperImpl

        self.sweeper = PruningOptunaSweeperImpl(
            sampler=sampler,
            pruner=pruner,
            direction=direction,
            study_name=study_name,
            storage=storage,
            n_trials=n_trials,
            n_jobs=n_jobs,
            params=params,
            plots=plots,
            max_failure_rate=max_failure_rate,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
        )

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
