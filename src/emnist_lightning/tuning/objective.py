"""The task side of a sweep: find this job's trial, size its threads, train with pruning."""

from __future__ import annotations

import os
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from emnist_lightning.errors import ConfigError
from emnist_lightning.tuning.presets import component_config
from emnist_lightning.tuning.storage import open_storage, storage_spec

# User attributes the task sets on its trial: how it ran, for trials.csv readers and tests.
THREADS_ATTR = "torch_threads"
JOB_PID_ATTR = "job_pid"


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
    spec = storage_spec(sweeper.get("storage"), hydra_cfg.sweep.dir, hydra_cfg.runtime.cwd)
    pruner_cfg = component_config(sweeper.get("pruner"), "pruner")
    pruner = instantiate(pruner_cfg) if pruner_cfg else optuna.pruners.NopPruner()
    storage = open_storage(spec)
    study = optuna.load_study(study_name=sweeper.study_name, storage=storage, pruner=pruner)
    study_id = storage.get_study_id_from_name(sweeper.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
    return optuna.trial.Trial(study, trial_id)


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def trial_threads(setting: Any, parallel_trials: int) -> int | None:
    """Torch threads for one trial, or None to keep torch's default (every core).

    `auto` shares the cores among the trials a parallel launcher runs at once, so N trials on
    N cores do not oversubscribe them; a whole number is used as given.
    """
    if setting is None:
        return None
    if setting == "auto":
        return None if parallel_trials <= 1 else max(1, available_cpus() // parallel_trials)
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        return setting
    raise ConfigError(
        f"threads_per_trial={setting!r} is invalid: use auto, null or a whole number >= 1"
    )


def parallel_trials(hydra_cfg: Any) -> int:
    """Trials running at once on this machine: the sweeper's n_jobs, unless the launcher is
    Hydra's basic one, which runs a batch one job after another."""
    launcher = str(hydra_cfg.launcher.get("_target_", ""))
    if launcher.endswith("BasicLauncher"):
        return 1
    return int(hydra_cfg.sweeper.get("n_jobs", 1))


def run_trial(cfg: DictConfig) -> float:
    """Train one trial, letting the pruner stop it after any epoch; return the objective."""
    import torch
    from optuna_integration import PyTorchLightningPruningCallback

    from emnist_lightning.training.run import (
        train,  # the training stack loads only when a trial runs
    )

    trial = current_trial(cfg)
    running_at_once = parallel_trials(HydraConfig.get()) if trial else 1
    threads = trial_threads(cfg.get("threads_per_trial", "auto"), running_at_once)
    if threads is not None:
        torch.set_num_threads(threads)
    callbacks = []
    if trial is not None:
        trial.set_user_attr(THREADS_ATTR, torch.get_num_threads())
        trial.set_user_attr(JOB_PID_ATTR, os.getpid())
        callbacks.append(PyTorchLightningPruningCallback(trial, monitor=cfg.pruning_monitor))
    metrics = train(cfg, extra_callbacks=callbacks)
    return metrics[cfg.objective]
