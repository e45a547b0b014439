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
from collections.abc import Callable, Mapping, Sequence
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

from ._errors import SweepConfigError, one_line
from .trial import OVER_BUDGET_ATTR, OVERRIDES_ATTR, WORKER_ATTR

log = logging.getLogger(__name__)


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


GRID_SAMPLER = "optuna.samplers.GridSampler"
QMC_SAMPLER = "optuna.samplers.QMCSampler"


def grid_choices(space: Mapping[str, BaseDistribution]) -> dict[str, list[Any]]:
    """The grid of a discrete search space, as the official plugin makes it: a choice's
    values, a stepped range's values from its start up to but without its end."""
    grid: dict[str, list[Any]] = {}
    for name, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            grid[name] = list(distribution.choices)
        elif isinstance(distribution, (IntDistribution, FloatDistribution)) and (
            distribution.step is not None and not distribution.log
        ):
            count = int((distribution.high - distribution.low) // distribution.step)
            grid[name] = [distribution.low + i * distribution.step for i in range(count)]
        else:
            raise SweepConfigError(
                f"the grid sampler takes only choice() and range() sweeps; {name} is "
                f"{type(distribution).__name__}({distribution.low}, {distribution.high}"
                f"{', log' if getattr(distribution, 'log', False) else ''})"
            )
    return grid


def component_config(value: Any, kind: str) -> dict[str, Any] | None:
    """A sampler or pruner config as a plain dict; a bare name such as
    `hydra.sweeper.pruner=none` means that preset."""
    from omegaconf import DictConfig, OmegaConf

    from .config import PRUNERS, SAMPLERS

    choices: Mapping[str, Any] = SAMPLERS if kind == "sampler" else PRUNERS
    if isinstance(value, str):
        if value not in choices:
            raise SweepConfigError(f"unknown {kind} '{value}': use one of {', '.join(choices)}")
        return OmegaConf.to_container(OmegaConf.structured(choices[value]), resolve=True)
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True)
    return dict(value) if value else None


def sampler_for_trial(
    sampler_cfg: Mapping[str, Any] | None,
    trial_number: int,
    space: Mapping[str, BaseDistribution] | None = None,
) -> optuna.samplers.BaseSampler:
    """Build the sampler with its seed offset by the trial number.

    A fixed seed alone would make every worker (and every resumed run) draw the same random
    start-up points; offsetting by the trial number keeps a study reproducible while each trial
    gets its own draw. QMC's seed names its sequence and the grid sampler's the order of its
    grid (the place in either is kept in the study), so theirs stays as given; the grid
    sampler gets the search space as its grid.
    """
    if not sampler_cfg:
        return optuna.samplers.TPESampler(seed=trial_number)
    cfg = dict(sampler_cfg)
    if cfg.get("seed") is not None and cfg.get("_target_") not in (QMC_SAMPLER, GRID_SAMPLER):
        cfg["seed"] = int(cfg["seed"]) + trial_number
    if cfg.get("_target_") == GRID_SAMPLER:
        cfg["search_space"] = grid_choices(space or {})
        # Every trial's sampler (and every worker's) must agree on the grid's order.
        cfg["seed"] = 0 if cfg.get("seed") is None else cfg["seed"]
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
    space: Mapping[str, BaseDistribution],
    sampler_cfg: Mapping[str, Any] | None,
    n_trials: int,
    overrides: Sequence[str],
    extend: Callable[[Any, optuna.Trial], None] | None = None,
    config: Any = None,
) -> optuna.Trial | None:
    """Ask one trial with every parameter drawn from `space` (and those `extend(config,
    trial)` suggests: custom_search_space); None if the budget is spent.

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
    study.sampler = sampler_for_trial(sampler_cfg, ticket.number, space)
    trial = optuna.Trial(study, ticket._trial_id)  # the trial, seen by its seeded sampler
    for name, distribution in space.items():
        _suggest(trial, name, distribution)
    trial.set_user_attr(WORKER_ATTR, this_worker())
    trial.set_user_attr(OVERRIDES_ATTR, list(overrides))
    if extend is not None:
        extend(config, trial)
        fixed_keys = {override_key(o) for o in overrides}
        overlap = sorted(fixed_keys & {override_key(name) for name in trial.params})
        if overlap:
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise SweepConfigError(
                f"custom_search_space suggested {', '.join(overlap)}, which the command line "
                "or params fix: drop one of them"
            )
    return trial


def override_key(override: str) -> str:
    """`++model.lr=0.1` -> `model.lr`."""
    return override.lstrip("+~").split("=", 1)[0]


def objective_values(value: Any, n_objectives: int) -> list[float]:
    """The task's return value as the study's objective values: anything float() takes (an
    np.float32, a 0-d tensor) for one objective, a list or tuple of such for several."""
    try:
        values = [float(value)] if n_objectives == 1 else [float(v) for v in value]
    except (TypeError, ValueError):
        wanted = "a number" if n_objectives == 1 else f"a list or tuple of {n_objectives} numbers"
        raise ValueError(f"the task returned {value!r}, not {wanted}") from None
    if len(values) != n_objectives:
        raise ValueError(
            f"the task returned {len(values)} values for {n_objectives} objectives ({value!r})"
        )
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"the task returned {value!r}, not a finite number")
    return values


def _tell(study: optuna.Study, trial: optuna.Trial, **outcome: Any) -> None:
    try:
        study.tell(trial, skip_if_finished=True, **outcome)
    except RuntimeError as exc:  # the grid sampler stops an optimize() loop we do not run
        if "Study.stop" not in str(exc):
            raise


def tell_result(study: optuna.Study, trial: optuna.Trial, job: JobReturn) -> tuple[TrialState, str]:
    """Record one job's outcome: pruned, failed (an exception, or a value that is not the
    study's number(s)) or complete; returns the state and, for a failure, why."""
    if job.status == JobStatus.COMPLETED:
        try:
            values = objective_values(job.return_value, len(study.directions))
        except ValueError as exc:
            log.warning("Trial %d failed: %s", trial.number, exc)
            _tell(study, trial, state=TrialState.FAIL)
            return TrialState.FAIL, str(exc)
        _tell(study, trial, values=values)
        return TrialState.COMPLETE, ""
    error = job._return_value  # Hydra keeps the task's exception here
    if isinstance(error, optuna.TrialPruned):
        _tell(study, trial, state=TrialState.PRUNED)
        return TrialState.PRUNED, ""
    reason = one_line(error) if isinstance(error, BaseException) else repr(error)
    log.error("Trial %d failed: %s", trial.number, reason)
    _tell(study, trial, state=TrialState.FAIL)
    return TrialState.FAIL, reason


def trial_overrides(
    trial: optuna.Trial | FrozenTrial, fixed: Sequence[str], number_key: str | None = None
) -> list[str]:
    """The job's command-line overrides: the fixed ones, the trial's params and, when the task
    asked for it, its trial number."""
    params = [f"{key}={value}" for key, value in trial.params.items()]
    number = [f"++{number_key}={trial.number}"] if number_key else []
    return [*fixed, *params, *number]
