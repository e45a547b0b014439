"""The sweeper's work: check the sweep, ask trials from a shared study, launch them, tell results.

Imported only when a sweep starts (see sweeper.py): Hydra imports every public module of the
hydra_plugins namespace at every start, and this one pulls in Optuna.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState

from emnist_lightning.cli import exit_on_user_error
from emnist_lightning.errors import ConfigError
from emnist_lightning.hydra_callbacks import folder_problem
from emnist_lightning.tuning import results
from emnist_lightning.tuning.heartbeat import Heartbeat
from emnist_lightning.tuning.objective import parallel_trials, trial_threads
from emnist_lightning.tuning.presets import SAMPLER_PACKAGES, component_config
from emnist_lightning.tuning.search_space import parse_search_space
from emnist_lightning.tuning.storage import display_spec, open_storage, storage_spec
from emnist_lightning.tuning.study import (
    ask_trial,
    counted_trials,
    fail_stale_trials,
    remaining_budget,
    sampler_for_trial,
    tell_result,
    trial_overrides,
)

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")
# The failure cap is judged once this many trials of a run have finished (and at its end).
MIN_TRIALS_FOR_FAILURE_CAP = 3


def _one_line(exc: BaseException) -> str:
    """An exception and its causes as one line (Hydra puts the useful part in the cause)."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 3:
        text = " ".join(str(current).split())
        if text and text not in parts:
            parts.append(text)
        current = current.__cause__ or current.__context__
    return "; ".join(parts) or type(exc).__name__


def _probe_points(space: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Points whose configs are built before any trial: every range's two ends, every choice."""

    def end(distribution: BaseDistribution, last: bool) -> Any:
        if isinstance(distribution, CategoricalDistribution):
            return distribution.choices[-1 if last else 0]
        return distribution.high if last else distribution.low  # type: ignore[attr-defined]

    low = {name: end(d, last=False) for name, d in space.items()}
    high = {name: end(d, last=True) for name, d in space.items()}
    points = [low, high]
    for name, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            points += [{**low, name: choice} for choice in distribution.choices[1:-1]]
    return points


class PruningOptunaSweeperImpl:
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
        plots: bool,
        max_failure_rate: float,
        heartbeat_interval: int,
        grace_period: int | None,
    ) -> None:
        self.sampler_cfg = sampler
        self.pruner_cfg = pruner
        self.direction = direction
        self.study_name = study_name
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.params = OmegaConf.to_container(params, resolve=True) if params else {}
        self.plots = plots
        self.max_failure_rate = max_failure_rate
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

    def _check_settings(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                f"hydra.sweeper.direction={self.direction!r} is invalid: use maximize or minimize"
            )
        for key, value in (("n_trials", self.n_trials), ("n_jobs", self.n_jobs)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"hydra.sweeper.{key}={value!r} is invalid: it must be a whole number >= 1"
                )
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ConfigError(
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate!r} is invalid: it must "
                "be between 0 and 1"
            )
        if self.heartbeat_interval < 1 or (
            self.grace_period is not None and self.grace_period <= self.heartbeat_interval
        ):
            raise ConfigError(
                "hydra.sweeper.heartbeat_interval must be >= 1 s and grace_period longer than it "
                f"(got {self.heartbeat_interval} and {self.grace_period})"
            )
        self.sampler_cfg = component_config(self.sampler_cfg, "sampler")
        self.pruner_cfg = component_config(self.pruner_cfg, "pruner")
        target = (self.sampler_cfg or {}).get("_target_", "")
        if target in SAMPLER_PACKAGES:
            package, extra = SAMPLER_PACKAGES[target]
            try:
                __import__(package)
            except ImportError:
                raise ConfigError(
                    f"sampler {target} needs the '{package}' package: "
                    f"pip install 'emnist-lightning[{extra}]'"
                ) from None
        for kind, build in (("sampler", self._sampler_probe), ("pruner", self._pruner)):
            try:
                build()
            except Exception as exc:
                raise ConfigError(f"hydra.sweeper.{kind} is invalid: {_one_line(exc)}") from None

    def _sampler_probe(self) -> optuna.samplers.BaseSampler:
        return sampler_for_trial(self.sampler_cfg, 0)

    def _pruner(self) -> optuna.pruners.BasePruner:
        return instantiate(self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner()

    def _check_sweep_dir(self) -> None:
        problem = folder_problem(self.sweep_dir)
        if problem is not None:
            raise ConfigError(
                f"cannot write the sweep folder {self.sweep_dir}: {problem} "
                "(set hydra.sweep.dir or paths.log_dir to a writable folder)"
            )

    def _check_task_config(self) -> None:
        """The task's own keys first (the sampler's seed is the task's `seed`): a bad value is
        named as the user typed it, not as a sampler error."""
        from emnist_lightning.config_checks import validate_config

        validate_config(self.config)

    def _check_trial_configs(self, space: dict[str, BaseDistribution], fixed: list[str]) -> None:
        """Build the task config of a few trial points (range ends, every choice) and check
        their values, so a bad override or search-space key costs no trial."""
        from emnist_lightning.config_checks import validate_config

        for point in _probe_points(space):
            overrides = [*fixed, *(f"{k}={v}" for k, v in point.items()), "++trial_number=0"]
            try:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            except Exception as exc:
                raise ConfigError(
                    f"a trial's config cannot be built: {_one_line(exc)} (check the search space "
                    "in hydra.sweeper.params and the command-line overrides)"
                ) from None
            validate_config(cfg)
            trial_threads(cfg.get("threads_per_trial"), parallel_trials(cfg.hydra))

    # ---- the study ----

    def _open_study(self) -> tuple[optuna.storages.BaseStorage, optuna.Study]:
        storage = open_storage(self.storage_spec, self.heartbeat_interval, self.grace_period)
        try:
            study = optuna.create_study(
                study_name=self.study_name,
                storage=storage,
                direction=self.direction,
                pruner=self._pruner(),
                load_if_exists=True,
            )
        except ValueError as exc:  # e.g. the stored study has the other direction
            raise ConfigError(
                f"study '{self.study_name}' in {display_spec(self.storage_spec)}: {exc}"
            ) from None
        self._check_direction(study)
        return storage, study

    def _check_direction(self, study: optuna.Study) -> None:
        """Optuna loads an existing study with its own direction, whatever is asked: a study
        made to maximize would silently keep maximizing (and report its maximum as best)."""
        stored = [d.name.lower() for d in study.directions]
        asked = [self.direction] if isinstance(self.direction, str) else list(self.direction)
        if stored != asked:
            raise ConfigError(
                f"study '{self.study_name}' in {display_spec(self.storage_spec)} was created to "
                f"{', '.join(stored)}; hydra.sweeper.direction={', '.join(asked)} cannot change "
                "that: keep its direction, or start a new study (hydra.sweeper.study_name=<new>)"
            )

    @exit_on_user_error
    def sweep(self, arguments: list[str]) -> list[Any]:
        space, fixed = parse_search_space(self.params, arguments)
        if not space:
            raise ConfigError(
                "no search space: set hydra.sweeper.params or pass key=interval(...) sweeps"
            )
        self._check_task_config()
        self._check_settings()
        self._check_sweep_dir()
        self._check_trial_configs(space, fixed)
        self._space, self._fixed = space, fixed  # what the study's trials are checked against
        storage, study = self._open_study()
        log.info(
            "Study '%s' in %s: %d trial(s) so far, target %d; searching %s",
            self.study_name,
            display_spec(self.storage_spec),
            len(counted_trials(study)),
            self.n_trials,
            ", ".join(space),
        )
        with Heartbeat(storage) as heartbeat:
            all_returns = self._run(study, heartbeat, space, fixed)
            self._wait_for_other_workers(study)
        self._write_results(study, final=True)
        return all_returns

    def _run(
        self,
        study: optuna.Study,
        heartbeat: Heartbeat,
        space: dict[str, BaseDistribution],
        fixed: list[str],
    ) -> list[Any]:
        all_returns: list[Any] = []
        finished = failed = 0
        last_error = ""
        while True:
            fail_stale_trials(study)
            budget = remaining_budget(study, self.n_trials)
            if budget <= 0:
                break
            batch = []
            for _ in range(min(self.n_jobs, budget)):
                trial = ask_trial(study, space, self.sampler_cfg, self.n_trials, fixed)
                if trial is None:  # another worker took the last place first
                    break
                heartbeat.add(trial._trial_id)
                batch.append(trial)
            if not batch:
                continue
            overrides = [trial_overrides(trial, fixed) for trial in batch]
            try:
                returns = self.launcher.launch(overrides, initial_job_idx=batch[0].number)
            except Exception as exc:  # the launcher itself failed (e.g. a worker process died)
                last_error = f"launcher: {_one_line(exc)}"
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
                    state = tell_result(study, trial, job)
                    if state == TrialState.FAIL:
                        error = job._return_value
                        last_error = (
                            _one_line(error)
                            if isinstance(error, BaseException)
                            else f"returned {job.return_value!r}"
                        )
                finished += 1
                failed += state == TrialState.FAIL
                self._report(study, trial.number, state)
            all_returns.extend(r for r in returns if r is not None)
            self._write_results(study)
            if finished >= MIN_TRIALS_FOR_FAILURE_CAP:
                self._check_failure_rate(study, finished, failed, last_error)
        if finished:
            self._check_failure_rate(study, finished, failed, last_error)
        return all_returns

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

    def _report(self, study: optuna.Study, number: int, state: TrialState) -> None:
        trials = counted_trials(study)
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        done = sum(t.state.is_finished() for t in trials)
        counts = results.state_counts(study)
        try:
            best = f"{study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "none yet"
        value = "" if frozen.value is None else f" value={frozen.value:.4f}"
        log.info(
            "Trial %d/%d #%d %s%s epochs=%d | best %s | pruned %d, failed %d",
            done,
            self.n_trials,
            number,
            state.name,
            value,
            results.epochs_run(frozen),
            best,
            counts.get("PRUNED", 0),
            counts.get("FAIL", 0),
        )

    def _write_results(self, study: optuna.Study, final: bool = False) -> None:
        experiment = results.write_all(
            study, self.sweep_dir, self.storage_spec, self._space, self._fixed, self.plots
        )
        if not final:
            return
        log.info("Results in %s", self.sweep_dir)
        if experiment is not None:
            # This machine's paths and this sweep's deletions: not read back from the study.
            log.info(
                "Retrain the best trial at full length: %s",
                results.retrain_command(self.sweep_dir, self._fixed),
            )
