"""The sweeper's work: check the sweep, ask trials from a shared study, launch them, tell results.

Imported only when a sweep starts (see optuna_sweeper.py): Hydra imports every public module
of the hydra_plugins namespace at every start, and this one pulls in Optuna. It knows nothing
of the task: what a task wants checked or written after a sweep comes in through the
`config_check` and `results_callback` settings.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState

from . import _results
from ._errors import SweepConfigError, exit_on_config_error, message_line, one_line
from ._heartbeat import Heartbeat
from ._search_space import (  # noqa: F401 (the official plugin's names, for its users' tests)
    create_optuna_distribution_from_override,
    create_params_from_overrides,
    parse_search_space,
)
from ._storage import DEFAULT_STUDY_NAME, display_spec, open_storage, storage_spec
from ._study import (
    GRID_SAMPLER,
    QMC_SAMPLER,
    ask_trial,
    component_config,
    counted_trials,
    fail_stale_trials,
    grid_choices,
    remaining_budget,
    sampler_for_trial,
    tell_result,
    trial_overrides,
)

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")
# The failure cap is judged once this many trials of a run have finished (and at its end),
# unless max_failure_rate is 0, where the first failure stops the sweep as in the official one.
MIN_TRIALS_FOR_FAILURE_CAP = 3
# Python packages a sampler imports only when it first samples.
SAMPLER_PACKAGES: dict[str, str] = {
    "optuna.samplers.CmaEsSampler": "cmaes",
    "optuna.samplers.GPSampler": "scipy",
    "optuna.samplers.QMCSampler": "scipy",
}


def _probe_points(space: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Points whose configs are built before any trial: every range's two ends, every choice."""

    def end(distribution: BaseDistribution, last: bool) -> Any:
        if isinstance(distribution, CategoricalDistribution):
            return distribution.choices[-1 if last else 0]
        return distribution.high if last else distribution.low  # type: ignore[attr-defined]

    low = {name: end(d, last=False) for name, d in space.items()}
    high = {name: end(d, last=True) for name, d in space.items()}
    points = [low, high] if space else [low]
    for name, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            points += [{**low, name: choice} for choice in distribution.choices[1:-1]]
    return points


def _directions(direction: Any) -> list[str]:
    if isinstance(direction, (list, tuple, ListConfig)):
        names = [str(getattr(d, "name", d)) for d in direction]
    else:
        names = [str(getattr(direction, "name", direction))]
    bad = [d for d in names if d not in DIRECTIONS]
    if bad or not names:
        raise SweepConfigError(
            f"hydra.sweeper.direction={direction!r} is invalid: use maximize or minimize, or a "
            "list of them (one per value the task returns)"
        )
    return names


def _hook(setting: str, dotpath: str | None) -> Callable[..., Any] | None:
    if not dotpath:
        return None
    try:
        return get_method(dotpath)
    except Exception as exc:
        raise SweepConfigError(
            f"hydra.sweeper.{setting}={dotpath} cannot be imported: {message_line(exc)}"
        ) from None


class PruningOptunaSweeperImpl:
    def __init__(
        self,
        sampler: Any,
        pruner: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: Any | None,
        custom_search_space: str | None,
        plots: bool,
        trial_number_key: str | None,
        config_check: str | None,
        results_callback: str | None,
        heartbeat_interval: int,
        grace_period: int | None,
    ) -> None:
        self.sampler_cfg = sampler
        self.pruner_cfg = pruner
        self.direction = direction
        self.storage = storage
        self.study_name = study_name or DEFAULT_STUDY_NAME
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = OmegaConf.to_container(params, resolve=True) if params else {}
        self.custom_search_space = custom_search_space
        self.plots = plots
        self.trial_number_key = trial_number_key
        self.config_check = config_check
        self.results_callback = results_callback
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.storage_spec = storage_spec(self.storage, self.sweep_dir, Path.cwd())

    # ---- checks: everything a user can get wrong is found before a trial is asked ----

    def _resolve_hooks(self) -> None:
        self.extend = _hook("custom_search_space", self.custom_search_space)
        self.check_config = _hook("config_check", self.config_check)
        self.on_results = _hook("results_callback", self.results_callback)

    def _check_config(self, cfg: DictConfig) -> None:
        """Pass a config to the config_check hook; what it raises is one line."""
        if self.check_config is None:
            return
        try:
            self.check_config(cfg)
        except Exception as exc:
            raise SweepConfigError(message_line(exc)) from None

    def _check_settings(self, space: dict[str, BaseDistribution]) -> None:
        self.directions = _directions(self.direction)
        for key, value in (("n_trials", self.n_trials), ("n_jobs", self.n_jobs)):
            if not isinstance(value, int) or value < 1:
                raise SweepConfigError(
                    f"hydra.sweeper.{key}={value!r} is invalid: it must be a whole number >= 1"
                )
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise SweepConfigError(
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate!r} is invalid: it must "
                "be between 0 and 1"
            )
        if self.heartbeat_interval < 1 or (
            self.grace_period is not None and self.grace_period <= self.heartbeat_interval
        ):
            raise SweepConfigError(
                "hydra.sweeper.heartbeat_interval must be >= 1 s and grace_period longer than it "
                f"(got {self.heartbeat_interval} and {self.grace_period})"
            )
        self.sampler_cfg = component_config(self.sampler_cfg, "sampler")
        self.pruner_cfg = component_config(self.pruner_cfg, "pruner")
        self._check_sampler(space)
        for kind, build in (
            ("sampler", lambda: sampler_for_trial(self.sampler_cfg, 0, space)),
            ("pruner", self._pruner),
        ):
            try:
                build()
            except SweepConfigError:
                raise
            except Exception as exc:  # instantiate() puts the sampler's own error in the cause
                raise SweepConfigError(
                    f"hydra.sweeper.{kind} is invalid: {message_line(exc.__cause__ or exc)}"
                ) from None

    def _check_sampler(self, space: dict[str, BaseDistribution]) -> None:
        target = (self.sampler_cfg or {}).get("_target_", "")
        package = SAMPLER_PACKAGES.get(target)
        if package:
            try:
                __import__(package)
            except ImportError:
                raise SweepConfigError(
                    f"sampler {target} needs the '{package}' package: pip install {package}"
                ) from None
        if target == QMC_SAMPLER and (self.n_jobs > 1 or self.storage is not None):
            raise SweepConfigError(
                "the qmc sampler runs with one worker only (its sample counter is not atomic, "
                "so parallel trials could draw the same point): set hydra.sweeper.n_jobs=1 and "
                "leave hydra.sweeper.storage null, or pick another sampler"
            )
        if target == GRID_SAMPLER:
            size = 1
            for values in grid_choices(space).values():
                size *= len(values)
            if size < self.n_trials:
                log.info(
                    "The grid has %d points: n_trials is %d, not %d", size, size, self.n_trials
                )
                self.n_trials = size

    def _pruner(self) -> optuna.pruners.BasePruner:
        if len(self.directions) > 1:  # Optuna prunes single-objective studies only
            return optuna.pruners.NopPruner()
        return instantiate(self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner()

    def _check_sweep_dir(self) -> None:
        try:
            self.sweep_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.sweep_dir):
                pass
        except OSError as exc:
            raise SweepConfigError(
                f"cannot write the sweep folder {self.sweep_dir}: {exc.strerror or exc} "
                "(set hydra.sweep.dir to a writable folder)"
            ) from None

    def _check_trial_configs(self, space: dict[str, BaseDistribution], fixed: list[str]) -> None:
        """Build the task config of a few trial points (range ends, every choice) and pass it
        to the config_check hook, so a bad override or search-space key costs no trial."""
        number = [f"++{self.trial_number_key}=0"] if self.trial_number_key else []
        for point in _probe_points(space):
            overrides = [*fixed, *(f"{k}={v}" for k, v in point.items()), *number]
            try:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            except Exception as exc:
                raise SweepConfigError(
                    f"a trial's config cannot be built: {one_line(exc).split(': ', 1)[-1]} "
                    "(check the search space in hydra.sweeper.params and the command-line "
                    "overrides)"
                ) from None
            self._check_config(cfg)

    def _note_pruning(self) -> None:
        target = (self.pruner_cfg or {}).get("_target_", "optuna.pruners.NopPruner")
        if len(self.directions) > 1 and target != "optuna.pruners.NopPruner":
            log.warning(
                "Pruning does not apply to several objectives (Optuna prunes single-objective "
                "studies only): every trial runs to its end"
            )

    # ---- the study ----

    def _open_study(self) -> tuple[optuna.storages.BaseStorage, optuna.Study]:
        storage = open_storage(self.storage_spec, self.heartbeat_interval, self.grace_period)
        try:
            study = optuna.create_study(
                study_name=self.study_name,
                storage=storage,
                directions=self.directions,
                pruner=self._pruner(),
                load_if_exists=True,
            )
        except ValueError as exc:  # e.g. the stored study has other directions
            raise SweepConfigError(
                f"study '{self.study_name}' in {display_spec(self.storage_spec)}: {exc}"
            ) from None
        self._check_direction(study)
        return storage, study

    def _check_direction(self, study: optuna.Study) -> None:
        """Optuna loads an existing study with its own directions, whatever is asked: a study
        made to maximize would silently keep maximizing (and report its maximum as best)."""
        stored = [d.name.lower() for d in study.directions]
        if stored != self.directions:
            raise SweepConfigError(
                f"study '{self.study_name}' in {display_spec(self.storage_spec)} was created to "
                f"{', '.join(stored)}; hydra.sweeper.direction={', '.join(self.directions)} cannot "
                "change that: keep its direction, or start a new study (hydra.sweeper.study_name=<new>)"
            )

    @exit_on_config_error
    def sweep(self, arguments: list[str]) -> None:
        self.search = search = parse_search_space(self.params, arguments)
        space, fixed = search.distributions, search.fixed
        self._resolve_hooks()
        # The task's own keys first (a sampler's seed may be the task's `seed`): a bad value is
        # named as the user typed it, not as a sampler error.
        self._check_config(self.config)
        self._check_settings(space)
        self._check_sweep_dir()
        self._check_trial_configs(space, fixed)
        self._note_pruning()
        storage, study = self._open_study()
        log.info(
            "Study '%s' in %s (%s): %d trial(s) so far, target %d; searching %s",
            self.study_name,
            display_spec(self.storage_spec),
            ", ".join(self.directions),
            len(counted_trials(study)),
            self.n_trials,
            ", ".join(space) or "nothing (every trial runs the same config)",
        )
        with Heartbeat(storage) as heartbeat:
            self._run(study, heartbeat, space, fixed)
            self._wait_for_other_workers(study)
        self._write_results(study, final=True)

    def _ask_batch(
        self,
        study: optuna.Study,
        heartbeat: Heartbeat,
        space: dict[str, BaseDistribution],
        fixed: list[str],
        size: int,
    ) -> list[optuna.Trial]:
        batch = []
        for _ in range(size):
            trial = ask_trial(
                study, space, self.sampler_cfg, self.n_trials, fixed, self.extend, self.config
            )
            if trial is None:  # another worker took the last place first
                break
            heartbeat.add(trial._trial_id)
            batch.append(trial)
        return batch

    def _run(
        self,
        study: optuna.Study,
        heartbeat: Heartbeat,
        space: dict[str, BaseDistribution],
        fixed: list[str],
    ) -> None:
        finished = failed = 0
        last_error = ""
        while True:
            fail_stale_trials(study)
            budget = remaining_budget(study, self.n_trials)
            if budget <= 0:
                break
            batch = self._ask_batch(study, heartbeat, space, fixed, min(self.n_jobs, budget))
            if not batch:
                continue
            overrides = [trial_overrides(t, fixed, self.trial_number_key) for t in batch]
            try:
                returns = self.launcher.launch(overrides, initial_job_idx=batch[0].number)
            except Exception as exc:  # the launcher itself failed (e.g. a worker process died)
                last_error = f"launcher: {one_line(exc)}"
                log.error("Trials %s failed in the launcher: %s", [t.number for t in batch], exc)
                returns = [None] * len(batch)
            except BaseException:  # Ctrl-C, or a task's one-line user error: stop the sweep
                for trial in batch:
                    heartbeat.discard(trial._trial_id)
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                self._write_results(study)
                raise
            for trial, job in zip(batch, returns, strict=True):
                heartbeat.discard(trial._trial_id)
                if job is None:
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                    state = TrialState.FAIL
                else:
                    state, reason = tell_result(study, trial, job)
                    last_error = reason or last_error
                finished += 1
                failed += state == TrialState.FAIL
                self._report(study, trial.number, state)
            self._write_results(study)
            if finished >= MIN_TRIALS_FOR_FAILURE_CAP or self.max_failure_rate == 0.0:
                self._check_failure_rate(study, finished, failed, last_error)
        if finished:
            self._check_failure_rate(study, finished, failed, last_error)

    def _check_failure_rate(
        self, study: optuna.Study, finished: int, failed: int, last_error: str
    ) -> None:
        if failed / finished <= self.max_failure_rate:
            return
        self._write_results(study, final=True)
        print(
            f"error: {failed} of the {finished} trials this sweep ran failed (more than "
            f"hydra.sweeper.max_failure_rate={self.max_failure_rate}); last: {last_error}. "
            "Fix the cause and run the same command again to resume.",
            file=sys.stderr,
        )
        raise SystemExit(1)

    def _wait_for_other_workers(self, study: optuna.Study) -> None:
        """Give other workers' RUNNING trials a grace period to finish or go stale, so a dead
        worker's trial is marked FAIL now rather than by the study's next run."""
        grace = self.grace_period or 2 * self.heartbeat_interval
        deadline = time.monotonic() + grace + self.heartbeat_interval
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if running:
            log.info(
                "Waiting up to %d s for %d trial(s) of other workers",
                grace + self.heartbeat_interval,
                len(running),
            )
        while running and time.monotonic() < deadline:
            time.sleep(min(self.heartbeat_interval, max(0.0, deadline - time.monotonic())))
            fail_stale_trials(study)
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    # ---- reporting ----

    def _standing(self, study: optuna.Study) -> str:
        if _results.is_multi_objective(study):
            return f"Pareto front {len(_results.pareto_trials(study))} trial(s)"
        best = _results.best_trial(study)
        return "best none yet" if best is None else f"best {best.value:.4f} (trial {best.number})"

    def _report(self, study: optuna.Study, number: int, state: TrialState) -> None:
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        done = sum(t.state.is_finished() for t in counted_trials(study))
        counts = _results.state_counts(study)
        values = ""
        if frozen.values is not None:
            shown = ", ".join(f"{v:.4f}" for v in frozen.values)
            values = f" value={shown}" if len(frozen.values) == 1 else f" values=[{shown}]"
        log.info(
            "Trial %d/%d #%d %s%s steps=%d | %s | pruned %d, failed %d",
            done,
            self.n_trials,
            number,
            state.name,
            values,
            _results.epochs_run(frozen),
            self._standing(study),
            counts.get("PRUNED", 0),
            counts.get("FAIL", 0),
        )

    def _write_results(self, study: optuna.Study, final: bool = False) -> None:
        _results.write_all(study, self.sweep_dir, self.storage_spec, self.plots)
        if self.on_results is not None:
            try:
                self.on_results(study, self.sweep_dir, final, self.config, self.search)
            except Exception as exc:  # e.g. the task's side refuses a setting of its own
                raise SweepConfigError(
                    f"hydra.sweeper.results_callback: {message_line(exc)}"
                ) from None
        if not final:
            return
        log.info("Results in %s", self.sweep_dir)
        if _results.is_multi_objective(study):
            for trial in _results.pareto_trials(study):
                log.info(
                    "    Pareto trial %d: values %s, params %s",
                    trial.number,
                    trial.values,
                    trial.params,
                )
        else:
            best = _results.best_trial(study)
            if best is not None:
                log.info(
                    "Best value %s with params %s (trial %d)", best.value, best.params, best.number
                )
