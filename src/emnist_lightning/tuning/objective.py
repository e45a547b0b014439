"""The task side of a sweep: find this job's trial, size its threads, train with pruning and
return the objective(s) the sweep's directions name."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, ListConfig

from emnist_lightning.errors import ConfigError
from hydra_plugins.optuna_pruning_sweeper.trial import current_trial, is_multi_objective

# User attributes the task sets on its trial: how it ran, for trials.csv readers and tests.
THREADS_ATTR = "torch_threads"
JOB_PID_ATTR = "job_pid"
# Objectives that are not training metrics: the model's parameter count (its size on disk
# and, on a CPU, roughly its inference cost).
PARAMS_OBJECTIVE = "params"
# Metrics train() returns without a test pass; with test=true, test/* as well.
TRAINING_OBJECTIVES = ("val/acc_best", "epochs", "global_step", PARAMS_OBJECTIVE)


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


def objective_names(cfg: DictConfig) -> list[str]:
    """`objective` as a list: one name, or one per direction of a multi-objective sweep."""
    value = cfg.objective
    return [str(v) for v in value] if isinstance(value, (list, ListConfig)) else [str(value)]


def check_objectives(cfg: DictConfig, n_directions: int) -> None:
    """Refuse objectives the trial cannot return, or a count that does not fit the sweep's
    directions, before any trial trains."""
    names = objective_names(cfg)
    if len(names) != n_directions:
        raise ConfigError(
            f"objective={names} names {len(names)} value(s) but hydra.sweeper.direction has "
            f"{n_directions}: give one direction per objective, e.g. "
            "'objective=[val/acc_best,params]' 'hydra.sweeper.direction=[maximize,minimize]'"
        )
    known = [*TRAINING_OBJECTIVES]
    unknown = [
        n for n in names if n not in known and not (cfg.get("test") and n.startswith("test/"))
    ]
    if unknown:
        raise ConfigError(
            f"objective {unknown[0]} is not something a trial returns: use one of "
            f"{', '.join(known)} (test/... only with test=true)"
        )


class ParameterCount(Callback):
    """Counts the model's parameters when fitting starts (the `params` objective)."""

    def __init__(self) -> None:
        self.count = 0

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.count = sum(p.numel() for p in pl_module.parameters())


def run_trial(cfg: DictConfig) -> float | tuple[float, ...]:
    """Train one trial, letting the pruner stop it after any epoch (one objective only);
    return the objective, or a tuple of them for a multi-objective sweep."""
    import torch
    from hydra.core.hydra_config import HydraConfig
    from optuna_integration import PyTorchLightningPruningCallback

    from emnist_lightning.training.run import (
        train,  # the training stack loads only when a trial runs
    )

    trial = current_trial(cfg)
    running_at_once = parallel_trials(HydraConfig.get()) if trial else 1
    threads = trial_threads(cfg.get("threads_per_trial", "auto"), running_at_once)
    if threads is not None:
        torch.set_num_threads(threads)
    size = ParameterCount()
    callbacks: list[Callback] = [size]
    if trial is not None:
        trial.set_user_attr(THREADS_ATTR, torch.get_num_threads())
        trial.set_user_attr(JOB_PID_ATTR, os.getpid())
        if not is_multi_objective(trial):
            callbacks.append(PyTorchLightningPruningCallback(trial, monitor=cfg.pruning_monitor))
    metrics = {**train(cfg, extra_callbacks=callbacks), PARAMS_OBJECTIVE: float(size.count)}
    values = []
    for name in objective_names(cfg):
        if name not in metrics:
            raise ConfigError(
                f"objective {name} is not among the trial's metrics ({', '.join(metrics)})"
            )
        values.append(metrics[name])
    return values[0] if len(values) == 1 else tuple(values)
