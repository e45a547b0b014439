"""Registers `hydra/sweeper=optuna_pruning` and its sampler and pruner choices with Hydra.

A drop-in for hydra-optuna-sweeper: the same keys with the same defaults (direction, storage,
study_name, n_trials, n_jobs, max_failure_rate, params, custom_search_space) and the same
sampler choices and options; `pruner`, the heartbeat settings and the hooks are additions
(docs/tuning.md lists every difference). Hydra imports this module at every start, so it
imports nothing heavy.
"""

from dataclasses import dataclass, field
from typing import Any, NoReturn

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


def raise_motpe_removed(*args: Any, **kwargs: Any) -> NoReturn:
    """What `hydra/sweeper/sampler=motpe` builds: Optuna 4.0 removed MOTPESampler."""
    raise ValueError(
        "The 'motpe' sampler was removed in Optuna 4.0. Use 'hydra/sweeper/sampler=tpe' "
        "instead: TPESampler now handles multi-objective optimization."
    )


@dataclass
class SamplerConfig:
    _target_: str = MISSING


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    group: bool = False
    warn_independent_sampling: bool | None = None
    # A trial still running counts as a poor result, so parallel trials do not all crowd
    # around one promising point (Optuna's default).
    constant_liar: bool = True
    constraints_func: Any = None


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    """Needs the `cmaes` package."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    independent_sampler: Any = None
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: str | None = None
    popsize: int | None = None
    inc_popsize: int = 2
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False
    source_trials: Any = None


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = None
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    constraints_func: Any = None


@dataclass
class GridSamplerConfig(SamplerConfig):
    """The grid is the search space itself (discrete sweeps only), filled in at run time."""

    _target_: str = "optuna.samplers.GridSampler"
    seed: int | None = None


@dataclass
class GPSamplerConfig(SamplerConfig):
    """Needs `scipy` (and torch)."""

    _target_: str = "optuna.samplers.GPSampler"
    seed: int | None = None
    independent_sampler: Any = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False
    constraints_func: Any = None
    warn_independent_sampling: bool = True


@dataclass
class QMCSamplerConfig(SamplerConfig):
    """Needs `scipy`. One worker only: its sample counter is not atomic."""

    _target_: str = "optuna.samplers.QMCSampler"
    seed: int | None = None
    qmc_type: str = "sobol"
    scramble: bool = False
    independent_sampler: Any = None
    warn_asynchronous_seeding: bool = True
    warn_independent_sampling: bool = True


@dataclass
class MOTPESamplerConfig(SamplerConfig):
    _target_: str = "hydra_plugins.optuna_pruning_sweeper.config.raise_motpe_removed"
    # Taken, so a seed set for every sampler (conf/tune.yaml) still reaches the message above.
    seed: int | None = None


SAMPLERS: dict[str, type[SamplerConfig]] = {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "nsgaii": NSGAIISamplerConfig,
    "grid": GridSamplerConfig,
    "gp": GPSamplerConfig,
    "qmc": QMCSamplerConfig,
    "motpe": MOTPESamplerConfig,
}

PRUNERS: dict[str, dict[str, Any]] = {
    # No pruning: what the official plugin does.
    "none": {"_target_": "optuna.pruners.NopPruner"},
    # After any epoch, stop a trial whose best score so far is not in the top quarter of
    # earlier trials' scores at that epoch.
    "percentile": {
        "_target_": "optuna.pruners.PercentilePruner",
        "percentile": 25.0,
        "n_startup_trials": 2,
        "n_warmup_steps": 0,
    },
    # Prune a trial whose epoch score is below the median of earlier trials at that epoch.
    "median": {
        "_target_": "optuna.pruners.MedianPruner",
        "n_startup_trials": 3,
        "n_warmup_steps": 1,
    },
    "successive_halving": {
        "_target_": "optuna.pruners.SuccessiveHalvingPruner",
        "min_resource": 1,
        "reduction_factor": 3,
    },
    "hyperband": {
        "_target_": "optuna.pruners.HyperbandPruner",
        "min_resource": 1,
        "max_resource": "auto",
        "reduction_factor": 3,
    },
}


@dataclass
class PruningOptunaSweeperConf:
    _target_: str = "hydra_plugins.optuna_pruning_sweeper.optuna_sweeper.PruningOptunaSweeper"
    # The sweeper builds sampler and pruner itself (per trial), from their configs.
    _recursive_: bool = False
    defaults: list[Any] = field(
        default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "none"}]
    )
    sampler: Any = None
    pruner: Any = None
    # minimize or maximize, or a list of them: one per value the task returns.
    direction: Any = "minimize"
    # null: a journal file <sweep dir>/optuna.journal; or a journal file path, or an RDB URL
    # (sqlite:///study.db, postgresql://user:password@host/db).
    storage: str | None = None
    # null: "optuna".
    study_name: str | None = None
    # The study's total of finished-or-failed trials, over every run and worker (a fresh
    # storage: the trials this run makes, as with the official plugin).
    n_trials: int = 20
    # Trials asked and launched together (run in parallel by a parallel launcher).
    n_jobs: int = 2
    # Stop (exit status 1) once more than this share of the trials a run finished failed,
    # judged from its third trial on and at its end; 0.0 stops at the first failure.
    max_failure_rate: float = 0.0
    # Search space in Hydra's sweep syntax, flat ("model.lr": ...) or nested like the task
    # config (model: {lr: ...}); a plain value fixes the key, null drops an entry.
    params: dict[str, Any] | None = None
    # Dotpath of a function (cfg, trial) -> None that suggests more (conditional) params.
    custom_search_space: str | None = None
    # ---- additions ----
    # Write Optuna's plots (matplotlib) beside the results after each batch of trials.
    plots: bool = False
    # Each job gets `++<trial_number_key>=<trial number>`, so the task can find its trial
    # (hydra_plugins.optuna_pruning_sweeper.trial.current_trial) to report and be pruned.
    trial_number_key: str | None = None
    # Dotpath of a function (trial config) -> None, called on the configs of a few trial
    # points (each range's ends, every choice) before any trial: raising refuses the sweep.
    config_check: str | None = None
    # Dotpath of a function (study, sweep_dir, final, config, search) -> None, called after the
    # result files are written (after every batch; final=True at the end; config: the sweep's;
    # search: its own search space and fixed overrides, to check a shared study's trials by).
    results_callback: str | None = None
    # Seconds between heartbeats of the trials a sweeper runs; a RUNNING trial without a beat
    # for grace_period seconds is failed by any worker of the study.
    heartbeat_interval: int = 10
    grace_period: int | None = 60


config_store = ConfigStore.instance()
config_store.store(
    group="hydra/sweeper",
    name="optuna_pruning",
    node=PruningOptunaSweeperConf,
    provider="optuna_pruning_sweeper",
)
for name, node in SAMPLERS.items():
    config_store.store(
        group="hydra/sweeper/sampler", name=name, node=node, provider="optuna_pruning_sweeper"
    )
for name, pruner in PRUNERS.items():
    config_store.store(
        group="hydra/sweeper/pruner", name=name, node=pruner, provider="optuna_pruning_sweeper"
    )
