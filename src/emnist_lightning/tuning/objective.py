"""The task side of a sweep: find this job's trial and train with a pruning callback."""

from __future__ import annotations

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from optuna_integration import PyTorchLightningPruningCallback

from ..training import train
from .presets import component_config
from .storage import open_storage

DEFAULT_STORAGE_NAME = "optuna.journal"


def storage_spec(storage: str | None, sweep_dir: str) -> str:
    """The sweep's storage: as configured, or a journal file in the sweep folder."""
    return storage or f"{sweep_dir}/{DEFAULT_STORAGE_NAME}"


def current_trial(cfg: DictConfig) -> optuna.Trial | None:
    """The Optuna trial the sweeper started this job for (None outside a sweep).

    The sweeper passes only the trial number; the storage, study name and pruner come from
    the sweeper's own config, so any Hydra launcher (in-process or not) can run the job.
    """
    number = cfg.get("trial_number")
    if number is None:
        return None
    hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.sweeper
    spec = storage_spec(sweeper.get("storage"), hydra_cfg.sweep.dir)
    pruner_cfg = component_config(sweeper.get("pruner"), "pruner")
    pruner = instantiate(pruner_cfg) if pruner_cfg else optuna.pruners.NopPruner()
    storage = open_storage(spec)
    study = optuna.load_study(study_name=sweeper.study_name, storage=storage, pruner=pruner)
    study_id = storage.get_study_id_from_name(sweeper.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
    return optuna.trial.Trial(study, trial_id)


def run_trial(cfg: DictConfig) -> float:
    """Train one trial, letting the pruner stop it after any epoch; return the objective."""
    trial = current_trial(cfg)
    callbacks = (
        [PyTorchLightningPruningCallback(trial, monitor=cfg.pruning_monitor)] if trial else []
    )
    metrics = train(cfg, extra_callbacks=callbacks)
    return metrics[cfg.objective]
