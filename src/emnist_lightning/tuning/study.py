"""Study bookkeeping for the sweeper: budgets, stale trials, asking and telling."""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Mapping
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

# Trials that count towards n_trials: finished or failed, and those running now.
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
WORKER_ATTR = "worker"


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker process on this machine is gone (kill -9,
    power loss); trials of live workers and of other machines are left alone."""
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR, "")
        worker_host, _, pid = worker.rpartition(":")
        if worker_host == host and pid.isdigit() and not _process_alive(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL)
            failed.append(trial.number)
    if failed:
        log.warning("Marked interrupted trial(s) %s as FAIL (their worker process is gone)", failed)
    return failed


def remaining_budget(study: optuna.Study, n_trials: int) -> int:
    """How many more trials this study may start so that n_trials are finished-or-failed."""
    return n_trials - len(study.get_trials(deepcopy=False, states=COUNTED_STATES))


def sampler_for_trial(
    sampler_cfg: Mapping[str, Any] | None, trial_number: int
) -> optuna.samplers.BaseSampler:
    """Build the sampler with its seed offset by the trial number.

    A fixed seed alone would make every worker (and every resumed run) draw the same
    random start-up points; offsetting by the trial number keeps a study reproducible
    while each trial gets its own draw. QMC keeps its seed: its scramble must not change.
    """
    if not sampler_cfg:
        return optuna.samplers.TPESampler(seed=trial_number)
    cfg = dict(sampler_cfg)
    if cfg.get("seed") is not None and not str(cfg.get("_target_", "")).endswith("QMCSampler"):
        cfg["seed"] = int(cfg["seed"]) + trial_number
    return instantiate(cfg)


def ask_trial(
    study: optuna.Study, space: dict[str, BaseDistribution], sampler_cfg: Mapping[str, Any] | None
) -> optuna.Trial:
    """Ask one trial with every parameter drawn from `space`, tagged with this worker."""
    study.sampler = sampler_for_trial(sampler_cfg, len(study.get_trials(deepcopy=False)))
    trial = study.ask(space)
    trial.set_user_attr(WORKER_ATTR, this_worker())
    return trial


def tell_result(study: optuna.Study, trial: optuna.Trial, job: JobReturn) -> TrialState:
    """Record one job's outcome: pruned, failed (exception or non-finite value) or complete."""
    if job.status == JobStatus.COMPLETED:
        value = job.return_value
        if isinstance(value, (int, float)) and math.isfinite(value):
            study.tell(trial, float(value))
            return TrialState.COMPLETE
        log.warning("Trial %d returned %r, not a finite number: FAIL", trial.number, value)
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    error = job._return_value  # Hydra keeps the task's exception here
    if isinstance(error, optuna.TrialPruned):
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    log.error("Trial %d failed: %s: %s", trial.number, type(error).__name__, error)
    study.tell(trial, state=TrialState.FAIL)
    return TrialState.FAIL


def trial_overrides(trial: optuna.Trial | FrozenTrial, fixed: list[str]) -> list[str]:
    """The job's command-line overrides: the fixed ones, the trial's params, its number."""
    params = [f"{key}={value}" for key, value in trial.params.items()]
    return [*fixed, *params, f"++trial_number={trial.number}"]
