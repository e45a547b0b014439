"""The sweeper: ask trials from a persistent study, launch them as Hydra jobs, tell results."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from emnist_lightning.tuning import results
from emnist_lightning.tuning.objective import storage_spec
from emnist_lightning.tuning.presets import component_config
from emnist_lightning.tuning.search_space import parse_search_space
from emnist_lightning.tuning.storage import open_storage, study_lock
from emnist_lightning.tuning.study import (
    ask_trial,
    fail_stale_trials,
    remaining_budget,
    tell_result,
    trial_overrides,
)

# Hydra imports every module of the plugin package; importing config here registers it too.
from . import config as _config  # noqa: F401

log = logging.getLogger(__name__)


class PruningOptunaSweeper(Sweeper):
    """Runs an Optuna study whose trials are Hydra jobs that can be pruned mid-training."""

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
        plots: bool = True,
        write_experiment: bool = True,
    ) -> None:
        self.sampler_cfg = component_config(sampler, "sampler")
        self.pruner_cfg = component_config(pruner, "pruner")
        self.direction = direction
        self.study_name = study_name
        self.storage = storage
        self.n_trials = n_trials
        self.n_jobs = max(1, n_jobs)
        self.params = OmegaConf.to_container(params, resolve=True) if params else {}
        self.plots = plots
        self.write_experiment = write_experiment

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.storage_spec = storage_spec(self.storage, str(self.sweep_dir))

    def _experiment_dir(self) -> Path | None:
        if not self.write_experiment:
            return None
        for source in self.config.hydra.runtime.config_sources:
            if source.provider == "main" and source.schema == "file":
                return Path(source.path) / "experiment" / "tuned"
        return None

    def _open_study(self) -> optuna.Study:
        from hydra.utils import instantiate

        pruner = instantiate(self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner()
        with study_lock(self.storage_spec):
            return optuna.create_study(
                study_name=self.study_name,
                storage=open_storage(self.storage_spec),
                direction=self.direction,
                pruner=pruner,
                load_if_exists=True,
            )

    def sweep(self, arguments: list[str]) -> list[Any]:
        space, fixed = parse_search_space(self.params, arguments)
        if not space:
            raise ValueError(
                "no search space: set hydra.sweeper.params or pass key=interval(...) sweeps"
            )
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        study = self._open_study()
        log.info(
            "Study '%s' in %s: %d trial(s) so far, target %d; searching %s",
            self.study_name,
            self.storage_spec,
            len(study.trials),
            self.n_trials,
            ", ".join(space),
        )
        all_returns: list[Any] = []
        while True:
            with study_lock(self.storage_spec):
                fail_stale_trials(study)
                budget = remaining_budget(study, self.n_trials)
                batch = [
                    ask_trial(study, space, self.sampler_cfg)
                    for _ in range(min(self.n_jobs, budget))
                ]
            if not batch:
                break
            overrides = [trial_overrides(trial, fixed) for trial in batch]
            self.validate_batch_is_legal(overrides)
            try:
                returns = self.launcher.launch(overrides, initial_job_idx=batch[0].number)
            except BaseException:
                for trial in batch:  # Ctrl-C or a launcher crash: these trials did not finish
                    study.tell(trial, state=TrialState.FAIL)
                raise
            for trial, job in zip(batch, returns, strict=True):
                state = tell_result(study, trial, job)
                self._report(study, trial.number, state)
            all_returns.extend(returns)
            self._write_results(study, fixed)
        self._write_results(study, fixed, final=True)
        return all_returns

    def _report(self, study: optuna.Study, number: int, state: TrialState) -> None:
        frozen = study.get_trials(deepcopy=False)[number]
        finished = len(
            study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            )
        )
        counts = results.state_counts(study)
        try:
            best = f"{study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "none yet"
        value = "" if frozen.value is None else f" value={frozen.value:.4f}"
        log.info(
            "Trial %d/%d #%d %s%s epochs=%d | best %s | pruned %d, failed %d",
            finished,
            self.n_trials,
            number,
            state.name,
            value,
            results.epochs_run(frozen),
            best,
            counts.get("PRUNED", 0),
            counts.get("FAIL", 0),
        )

    def _write_results(self, study: optuna.Study, fixed: list[str], final: bool = False) -> None:
        experiment = results.write_all(
            study,
            self.sweep_dir,
            self.storage_spec,
            fixed,
            self._experiment_dir(),
            plots=self.plots,
        )
        if final:
            log.info("Results in %s", self.sweep_dir)
            if experiment is not None:
                extra = " ".join(["", *results.machine_overrides(fixed)])
                log.info(
                    "Retrain the best trial at full length: python train.py experiment=tuned/%s%s",
                    experiment.stem,
                    extra,
                )
