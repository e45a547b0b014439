"""For tasks: the Optuna trial a job runs, so it can report scores and be pruned.

    from hydra_plugins.optuna_pruning_sweeper.trial import current_trial

    trial = current_trial(cfg)          # None outside a sweep, or without trial_number_key
    trial.report(score, epoch)
    if trial.should_prune():
        raise optuna.TrialPruned()

The sweeper passes only the trial number (`hydra.sweeper.trial_number_key`); the storage,
study name and pruner come from the sweeper's own settings in the job's Hydra config, so any
launcher (in-process, joblib, SLURM) can run the job. Optuna loads only when called: Hydra
imports this module at every start.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

# User attributes the sweeper sets on each trial.
WORKER_ATTR = "worker"  # host:pid of the sweeper that asked it (information only)
OVERRIDES_ATTR = "overrides"  # the fixed command-line overrides the trial ran with
OVER_BUDGET_ATTR = "over_budget"  # a trial given back because the budget was spent


def trial_fixed_overrides(trial: optuna.trial.FrozenTrial) -> list[str]:
    """The fixed command-line overrides a trial ran with (recorded when it was asked)."""
    return list(trial.user_attrs.get(OVERRIDES_ATTR, []))


def current_trial(cfg: Any) -> optuna.Trial | None:
    """The trial the sweeper started this job for; None when the job is not a trial of
    hydra/sweeper=optuna_pruning or the sweeper passes no trial number."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.sweeper
    key = sweeper.get("trial_number_key")
    number = cfg.get(key) if key else None
    if number is None or not str(sweeper.get("_target_", "")).startswith(__package__ or ""):
        return None
    return _load_trial(hydra_cfg, int(number))


def _load_trial(hydra_cfg: Any, number: int) -> optuna.Trial:
    import optuna

    from ._storage import DEFAULT_STUDY_NAME, storage_spec
    from ._study import component_config

    sweeper = hydra_cfg.sweeper
    study_name = sweeper.get("study_name") or DEFAULT_STUDY_NAME
    spec = storage_spec(sweeper.get("storage"), hydra_cfg.sweep.dir, hydra_cfg.runtime.cwd)
    pruner_cfg = component_config(sweeper.get("pruner"), "pruner")
    storage = _trial_storage(spec)
    study = optuna.load_study(study_name=study_name, storage=storage)
    if len(study.directions) == 1 and pruner_cfg:
        from hydra.utils import instantiate

        study.pruner = instantiate(pruner_cfg)
    study_id = storage.get_study_id_from_name(study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    return optuna.Trial(study, trial_id)


def is_multi_objective(trial: optuna.Trial) -> bool:
    """Optuna cannot prune trials of several objectives (report/should_prune refuse)."""
    return len(trial.study.directions) > 1


@lru_cache(maxsize=8)
def _trial_storage(spec: str) -> BaseStorage:
    """One storage per study location in each process: a database storage holds a pool of
    connections for the life of the process, so opening one per trial made a worker of many
    in-process trials hold ever more (PostgreSQL refused the 55th trial of three workers with
    "too many clients")."""
    from ._storage import open_storage

    return open_storage(spec)
