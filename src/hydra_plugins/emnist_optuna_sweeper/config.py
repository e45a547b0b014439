"""Registers `hydra/sweeper=optuna_pruning` and its sampler and pruner choices with Hydra.

Keys match hydra-optuna-sweeper's where they overlap (direction, study_name, storage,
n_trials, n_jobs, sampler, params, max_failure_rate); `pruner` and the heartbeat settings are
new. Hydra imports this module when it scans the hydra_plugins namespace at every start, so
it imports nothing heavy (presets is plain data).
"""

from dataclasses import dataclass, field
from typing import Any  # noqa: UP035 (OmegaConf reads these)

from hydra.core.config_store import ConfigStore

from emnist_lightning.tuning.presets import PRUNERS, SAMPLERS


@dataclass
class PruningOptunaSweeperConf:
    _target_: str = "hydra_plugins.emnist_optuna_sweeper.sweeper.PruningOptunaSweeper"
    # The sweeper builds sampler and pruner itself (per trial), from their configs.
    _recursive_: bool = False
    defaults: list[Any] = field(
        default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "percentile"}]
    )
    sampler: Any = None
    pruner: Any = None
    direction: str = "maximize"
    study_name: str = "emnist"
    # A journal file path, an RDB URL (sqlite:///..., postgresql://...), or null for
    # <sweep dir>/optuna.journal.
    storage: str | None = None
    # The study's target total of finished-or-failed trials, over every run and worker.
    n_trials: int = 20
    # Trials asked and launched together (run in parallel by a parallel launcher).
    n_jobs: int = 1
    # Search space in Hydra's sweep syntax, nested like the task config (model: {lr: ...})
    # or with dotted keys ("model.lr": ...): tag(log, interval(1e-5, 1e-1)), choice(...).
    params: dict[str, Any] | None = None
    # Write Optuna's matplotlib plots after each batch of trials.
    plots: bool = True
    # Stop with exit status 1 once more than this share of the trials a run finished have
    # failed (judged from its third trial on, and at its end). 1.0: never stop.
    max_failure_rate: float = 0.5
    # Seconds between the heartbeats a sweeper records for its running trials; a RUNNING
    # trial without a beat for grace_period seconds is failed by any worker of the study.
    heartbeat_interval: int = 10
    grace_period: int | None = 60


config_store = ConfigStore.instance()
config_store.store(
    group="hydra/sweeper",
    name="optuna_pruning",
    node=PruningOptunaSweeperConf,
    provider="emnist_optuna_sweeper",
)
for name, node in SAMPLERS.items():
    config_store.store(
        group="hydra/sweeper/sampler", name=name, node=node, provider="emnist_optuna_sweeper"
    )
for name, node in PRUNERS.items():
    config_store.store(
        group="hydra/sweeper/pruner", name=name, node=node, provider="emnist_optuna_sweeper"
    )
