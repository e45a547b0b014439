"""Our side of a sweep's results: the study's pictures (study_plots), the chosen trial as
`experiment/tuned.yaml` in the sweep folder, and the train.py command that retrains it.

The sweeper calls `write_sweep_results` after writing its own result files (conf/tune.yaml
sets hydra.sweeper.results_callback); the plugin itself knows nothing of train.py or
experiments.
"""

from __future__ import annotations

import logging
import shlex
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from emnist_lightning.atomic_files import replaced_atomically
from emnist_lightning.errors import ConfigError, first_line
from emnist_lightning.tuning.objective import objective_names
from emnist_lightning.tuning.trusted_trial import TrustedTrial, trusted_trial
from hydra_plugins.optuna_pruning_sweeper._search_space import SearchSpace

log = logging.getLogger(__name__)

# The chosen trial as an experiment config: python train.py --config-dir <sweep dir> experiment=tuned
EXPERIMENT_GROUP = "experiment"
EXPERIMENT_NAME = "tuned"
# Keys of a trial's job that describe the search, not the model: left out of the retrain config.
_SEARCH_ONLY_KEYS = (
    "trainer.max_epochs",
    "trainer.limit_",
    "trial_number",
    "hydra.",
    "test",
    "threads_per_trial",
    "objective",
    "pruning_monitor",
    "pick",
    "plots",
)
# Keys that describe this machine, not the model: passed on the retrain command line instead.
_MACHINE_KEYS = ("paths.", "data.data_dir", "data.download")
# Trials whose left-out parts were logged (once per process, not at every write).
_warned: set[int] = set()


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _is_search_only(override: str) -> bool:
    return _key(override).startswith(_SEARCH_ONLY_KEYS + _MACHINE_KEYS)


def _is_deletion(override: str) -> bool:
    return override.startswith("~")


def machine_overrides(fixed: list[str]) -> list[str]:
    """The fixed overrides a retrain needs on its command line (data location, paths)."""
    return [o for o in fixed if _key(o).startswith(_MACHINE_KEYS)]


def deletion_overrides(fixed: list[str]) -> list[str]:
    """The trial's `~key` / `~key=value` deletions of recipe keys: a config file cannot delete
    a key, so the retrain command carries them (tuned.yaml names them in a comment)."""
    return [o for o in fixed if _is_deletion(o) and not _is_search_only(o)]


def retrain_command(sweep_dir: Path, fixed: list[str]) -> str:
    """The train.py command that retrains the best trial at full length, from the folder the
    sweep was started in."""
    parts = [
        "python train.py",
        f"--config-dir {shlex.quote(str(sweep_dir))}",
        f"{EXPERIMENT_GROUP}={EXPERIMENT_NAME}",
        *(shlex.quote(o) for o in [*machine_overrides(fixed), *deletion_overrides(fixed)]),
    ]
    return " ".join(parts)


def best_experiment_yaml(
    best: FrozenTrial,
    fixed: list[str],
    study_name: str,
    params: Mapping[str, Any] | None = None,
) -> str:
    """An `experiment` config that retrains a trial with train.py's full length, from its
    `fixed` overrides and `params` (default: all of the trial's; `write_best_experiment`
    passes only what `trusted_trial` let through)."""
    params = best.params if params is None else params
    group_choices: dict[str, str] = {}
    values: dict[str, Any] = {}
    searched = {name.lstrip("+"): value for name, value in params.items()}
    for override in [*fixed, *(f"{k}={v}" for k, v in params.items())]:
        if _is_search_only(override) or _is_deletion(override):
            continue
        key, value = override.lstrip("+").split("=", 1)
        if any(part.startswith("_") for part in key.replace("/", ".").split(".")):
            continue  # read back from a shared storage: never a _target_ or _partial_ key
        parsed = yaml.safe_load(value) if value else None
        if "/" in key or ("." not in key and isinstance(parsed, str)):
            # A config group choice such as model=seed_cnn; `+group=x` adds one.
            added = override.startswith("+") and not override.startswith("++")
            group_choices[f"+{key}" if added else key] = value
        else:
            values[key] = searched.get(key, parsed)
    nested: dict[str, Any] = {}
    for key, value in values.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    header = (
        "# @package _global_\n"
        f"# Trial {best.number} of study '{study_name}' (objectives {_values_text(best)}).\n"
    )
    deletions = deletion_overrides(fixed)
    if deletions:
        header += (
            "# The trial also deleted keys, which a config file cannot do; the retrain command "
            f"passes them: {' '.join(shlex.quote(o) for o in deletions)}\n"
        )
    body: dict[str, Any] = {}
    if group_choices:
        # An experiment the sweep ran under is included whole (an experiment config cannot
        # override the experiment group it belongs to); other groups are overridden.
        defaults: list[Any] = [
            f"/experiment/{v}"
            if k == "experiment"
            else {f"/{k[1:]}": v}
            if k.startswith("+")
            else {f"override /{k}": v}
            for k, v in group_choices.items()
        ]
        body["defaults"] = [*defaults, "_self_"]
    body.update(nested)
    return header + yaml.safe_dump(body, sort_keys=False)


def _values_text(trial: FrozenTrial) -> str:
    return ", ".join(f"{v:.4f}" for v in trial.values or [])


def chosen_trial(study: optuna.Study, pick: int | None) -> FrozenTrial | None:
    """The trial to retrain: `pick` when given (any complete trial), else the best one of a
    single-objective study; None while there is none (or several objectives and no pick)."""
    complete = {
        t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }
    if pick is not None:
        if pick not in complete:
            raise ConfigError(
                f"pick={pick} is not a complete trial of study '{study.study_name}': pick one of "
                f"{sorted(complete) or 'none yet'} (trials.csv lists them)"
            )
        return complete[pick]
    if len(study.directions) > 1 or not complete:
        return None
    return study.best_trial


def trusted_choice(
    study: optuna.Study, pick: int | None, search: SearchSpace
) -> tuple[FrozenTrial, TrustedTrial] | None:
    """The chosen trial and what of it a retrain may use (checked against this sweep's own
    search space and command line: a study's storage is shared data); what is left out is
    logged once."""
    trial = chosen_trial(study, pick)
    if trial is None:
        return None
    trusted = trusted_trial(trial, search.distributions, search.fixed)
    if trusted.dropped and trial.number not in _warned:
        _warned.add(trial.number)
        log.warning(trusted.dropped_line(trial.number))
    return trial, trusted


def write_best_experiment(
    trial: FrozenTrial, trusted: TrustedTrial, study_name: str, sweep_dir: Path
) -> Path:
    """Write the trial as <sweep dir>/experiment/tuned.yaml, from what of the overrides it ran
    with this sweep searches or sets."""
    text = best_experiment_yaml(trial, trusted.overrides, study_name, trusted.params)
    target = sweep_dir / EXPERIMENT_GROUP / f"{EXPERIMENT_NAME}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(target, ".tmp") as partial:
        partial.write_text(text)
    return target


def write_plots(study: optuna.Study, sweep_dir: Path) -> list[Path]:
    """The study's pictures (study_plots); one that cannot be drawn yet is left out (a stale
    copy removed) and the reason said once."""
    from emnist_lightning.tuning.study_plots import FIGURES, PARETO_FIGURES, NotDrawn

    written = []
    figures = PARETO_FIGURES if len(study.directions) > 1 else FIGURES
    for name, build in figures.items():
        try:
            figure = build(study)
        except NotDrawn as exc:
            (sweep_dir / name).unlink(missing_ok=True)
            if (name, str(exc)) not in _SAID:
                _SAID.add((name, str(exc)))
                log.info("%s not drawn: %s", name, exc)
            continue
        except Exception as exc:  # a picture must never stop a running sweep
            log.warning("%s not drawn (%s: %s)", name, type(exc).__name__, first_line(exc))
            continue
        try:
            with replaced_atomically(sweep_dir / name, ".tmp") as partial:
                figure.savefig(partial, dpi=120, format="png")
        except Exception as exc:
            log.warning("%s not written (%s: %s)", name, type(exc).__name__, first_line(exc))
            continue
        written.append(sweep_dir / name)
    return written


# (picture, reason) pairs already told to the user in this process.
_SAID: set[tuple[str, str]] = set()


def write_sweep_results(
    study: optuna.Study,
    sweep_dir: Path,
    final: bool,
    config: DictConfig | None,
    search: SearchSpace,
) -> Path | None:
    """The sweeper's results_callback: the pictures (unless plots=false), tuned.yaml for the
    best (or picked) trial, and at the end the command that retrains it. `search` is this
    sweep's own search space and fixed overrides. Returns tuned.yaml's path once written."""
    if config is not None and len(study.directions) > 1 and study.metric_names is None:
        with warnings.catch_warnings():  # metric names are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(objective_names(config))  # the Pareto plot's axes
    if config is not None and config.get("plots", True):
        write_plots(study, sweep_dir)
    pick = config.get("pick") if config is not None else None
    if pick is not None and not final:
        return None  # the picked trial may still be running: written once the sweep ends
    chosen = trusted_choice(study, None if pick is None else int(pick), search)
    target = None if chosen is None else write_best_experiment(*chosen, study.study_name, sweep_dir)
    if not final:
        return target
    if chosen is None:
        if len(study.directions) > 1:
            front = (
                sorted(t.number for t in study.best_trials)
                if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                else []
            )
            log.info(
                "Several objectives: no single best trial. Pick one of the Pareto front %s "
                "(optimization_results.yaml, pareto_front.png) and run the same command with "
                "pick=<trial> to write experiment/tuned.yaml",
                front,
            )
        return None
    which = "the best trial" if pick is None else f"trial {chosen[0].number}"
    # This machine's paths and this sweep's deletions: not read back from the study.
    log.info("Retrain %s at full length: %s", which, retrain_command(sweep_dir, search.fixed))
    return target
