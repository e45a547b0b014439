"""Study bookkeeping for the sweeper: the trial budget, asking, telling, stale trials.

The budget holds with any number of workers on any storage, without a lock: Optuna numbers a
study's trials atomically (the RDB storage locks the study row, the journal file is append-only
under its own lock), so a new trial's number is a ticket. A trial runs only if fewer than
`n_trials` counted trials have a smaller number; otherwise it is given back at once. The same
number seeds the trial's sampler, so no two workers draw the same start-up point.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

# User attributes the sweeper sets on each trial.
WORKER_ATTR = "worker"  # host:pid of the sweeper that asked it (information only)
OVERRIDES_ATTR = "overrides"  # the fixed command-line overrides the trial ran with
OVER_BUDGET_ATTR = "over_budget"  # a trial given back because the budget was spent


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_counted(trial: FrozenTrial) -> bool:
    """Whether a trial uses up budget: every trial but queued ones and those given back."""
    return trial.state != TrialState.WAITING and not trial.user_attrs.get(OVER_BUDGET_ATTR)


def counted_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if is_counted(t)]


def remaining_budget(study: optuna.Study, n_trials: int) -> int:
    """How many more trials may start so that n_trials are finished-or-failed in the end."""
    return n_trials - len(counted_trials(study))


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose sweeper stopped beating (kill -9, a lost machine),
    with Optuna's own mechanism; returns their numbers."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = sorted(
        t.number
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if t.number in running
    )
    if failed:
        log.warning(
            "Marked interrupted trial(s) %s as FAIL (their sweeper stopped beating)", failed
        )
    return failed


def sampler_for_trial(
    sampler_cfg: Mapping[str, Any] | None, trial_number: int
) -> optuna.samplers.BaseSampler:
    """Build the sampler with its seed offset by the trial number.

    A fixed seed alone would make every worker (and every resumed run) draw the same random
    start-up points; offsetting by the trial number keeps a study reproducible while each trial
    gets its own draw.
    """
    if not sampler_cfg:
        return optuna.samplers.TPESampler(seed=trial_number)
    cfg = dict(sampler_cfg)
    if cfg.get("seed") is not None:
        cfg["seed"] = int(cfg["seed"]) + trial_number
    with warnings.catch_warnings():  # e.g. TPE's constant_liar is "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return instantiate(cfg)


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"unsupported distribution for {name}: {distribution}")


def ask_trial(
    study: optuna.Study,
    space: dict[str, BaseDistribution],
    sampler_cfg: Mapping[str, Any] | None,
    n_trials: int,
    overrides: Sequence[str],
) -> optuna.Trial | None:
    """Ask one trial with every parameter drawn from `space`; None if the budget is spent.

    A trial that loses the race for the last place is told FAIL with the user attribute
    over_budget and never counted; the caller then checks the budget again.
    """
    with warnings.catch_warnings():  # ask/tell with heartbeats is what we want here
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        ticket = study.ask()
    ahead = sum(
        1 for t in study.get_trials(deepcopy=False) if t.number < ticket.number and is_counted(t)
    )
    if ahead >= n_trials:
        ticket.set_user_attr(OVER_BUDGET_ATTR, True)
        study.tell(ticket, state=TrialState.FAIL, skip_if_finished=True)
        log.info("Trial #%d given back: the study's %d trials are taken", ticket.number, n_trials)
        return None
    study.sampler = sampler_for_trial(sampler_cfg, ticket.number)
    trial = optuna.Trial(study, ticket._trial_id)  # the trial, seen by its seeded sampler
    for name, distribution in space.items():
        _suggest(trial, name, distribution)
    trial.set_user_attr(WORKER_ATTR, this_worker())
    trial.set_user_attr(OVERRIDES_ATTR, list(overrides))
    return trial


def tell_result(study: optuna.Study, trial: optuna.Trial, job: JobReturn) -> TrialState:
    """Record one job's outcome: pruned, failed (exception or non-finite value) or complete."""
    if job.status == JobStatus.COMPLETED:
        value = job.return_value
        if isinstance(value, (int, float)) and math.isfinite(value):
            study.tell(trial, float(value), skip_if_finished=True)
            return TrialState.COMPLETE
        log.warning("Trial %d returned %r, not a finite number: FAIL", trial.number, value)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return TrialState.FAIL
    error = job._return_value  # Hydra keeps the task's exception here
    if isinstance(error, optuna.TrialPruned):
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        return TrialState.PRUNED
    log.error("Trial %d failed: %s: %s", trial.number, type(error).__name__, error)
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    return TrialState.FAIL


def trial_overrides(trial: optuna.Trial | FrozenTrial, fixed: Sequence[str]) -> list[str]:
    """The job's command-line overrides: the fixed ones, the trial's params, its number."""
    params = [f"{key}={value}" for key, value in trial.params.items()]
    return [*fixed, *params, f"++trial_number={trial.number}"]
