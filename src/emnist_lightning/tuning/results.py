"""What a sweep leaves in its folder: best params, every trial, plots, a retrain config."""

from __future__ import annotations

import csv
import io
import logging
import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import optuna
import yaml
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from emnist_lightning.atomic_files import replaced_atomically
from emnist_lightning.tuning.storage import display_spec
from emnist_lightning.tuning.study import WORKER_ATTR, is_counted
from emnist_lightning.tuning.trusted_trial import TrustedTrial, trusted_trial

matplotlib.use("Agg")  # files only; never open a window

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
TRIALS_FILE = "trials.csv"
# The best trial as an experiment config: python train.py --config-dir <sweep dir> experiment=tuned
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
)
# Keys that describe this machine, not the model: passed on the retrain command line instead.
_MACHINE_KEYS = ("paths.", "data.data_dir", "data.download")
# Trials whose left-out parts were logged (once per process, not at every write).
_warned: set[int] = set()


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` in one step, so a reader (or a worker writing at the same time) never
    sees half a file."""
    with replaced_atomically(path, ".tmp") as partial:
        partial.write_text(text)


def epochs_run(trial: FrozenTrial) -> int:
    """Epochs a trial validated: the pruning callback reports once per epoch."""
    return len(trial.intermediate_values)


def study_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials without those given back unrun (see study.is_counted)."""
    return [t for t in study.get_trials(deepcopy=False) if is_counted(t)]


def state_counts(study: optuna.Study) -> dict[str, int]:
    return dict(Counter(t.state.name for t in study_trials(study)))


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    trials = study_trials(study)
    param_names = sorted({name for t in trials for name in t.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", "value", *param_names, "epochs", "duration_s", "worker"])
    for t in trials:
        duration = t.duration.total_seconds() if t.duration else ""
        writer.writerow(
            [t.number, t.state.name, "" if t.value is None else t.value]
            + [t.params.get(name, "") for name in param_names]
            + [epochs_run(t), duration, t.user_attrs.get(WORKER_ATTR, "")]
        )
    write_atomic(path, buffer.getvalue())


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    return study.best_trial


def write_results_yaml(
    study: optuna.Study, path: Path, storage: str, trusted: TrustedTrial | None
) -> None:
    best = _best_trial(study)
    results: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": display_spec(storage),
        "direction": study.direction.name.lower(),
        "trials": state_counts(study),
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else float(best.value),
        "best_params": None if trusted is None else trusted.params,
        "best_overrides": None if trusted is None else trusted.overrides,
    }
    write_atomic(path, yaml.safe_dump(results, sort_keys=False))


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
    """An `experiment` config that retrains the best trial with train.py's full length, from
    its `fixed` overrides and `params` (default: all of the trial's; `write_all` passes only
    what `trusted_trial` let through)."""
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
        f"# Best trial {best.number} of study '{study_name}' (objective {best.value:.4f}).\n"
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


def best_trusted(
    study: optuna.Study, space: Mapping[str, BaseDistribution], fixed: Sequence[str]
) -> tuple[FrozenTrial, TrustedTrial] | None:
    """The best trial and what of it a retrain may use; what is left out is logged once."""
    best = _best_trial(study)
    if best is None:
        return None
    trusted = trusted_trial(best, space, fixed)
    if trusted.dropped and best.number not in _warned:
        _warned.add(best.number)
        log.warning(trusted.dropped_line(best.number))
    return best, trusted


def write_best_experiment(
    best: FrozenTrial, trusted: TrustedTrial, study_name: str, sweep_dir: Path
) -> Path:
    """Write the best trial as <sweep dir>/experiment/tuned.yaml, from what of the overrides
    it ran with this sweep searches or sets."""
    text = best_experiment_yaml(best, trusted.overrides, study_name, trusted.params)
    target = sweep_dir / EXPERIMENT_GROUP / f"{EXPERIMENT_NAME}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, text)
    return target


def write_plots(study: optuna.Study, sweep_dir: Path) -> list[Path]:
    """The study's pictures (study_plots); one that cannot be drawn yet is left out (a stale
    copy removed) and the reason said once."""
    from emnist_lightning.tuning.study_plots import FIGURES, NotDrawn

    written = []
    for name, build in FIGURES.items():
        try:
            figure = build(study)
        except NotDrawn as exc:
            (sweep_dir / name).unlink(missing_ok=True)
            if (name, str(exc)) not in _SAID:
                _SAID.add((name, str(exc)))
                log.info("%s not drawn: %s", name, exc)
            continue
        with replaced_atomically(sweep_dir / name, ".tmp") as partial:
            figure.savefig(partial, dpi=120, format="png")
        written.append(sweep_dir / name)
    return written


# (picture, reason) pairs already told to the user in this process.
_SAID: set[tuple[str, str]] = set()


def write_all(
    study: optuna.Study,
    sweep_dir: Path,
    storage: str,
    space: Mapping[str, BaseDistribution],
    fixed: Sequence[str],
    plots: bool = True,
) -> Path | None:
    """Write every result file (each replaced atomically, since every worker of a study writes
    them); returns the best trial's experiment config, if there is one yet. `space` and
    `fixed` are this sweep's own: the study's trials are checked against them."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    best = best_trusted(study, space, fixed)
    write_results_yaml(study, sweep_dir / RESULTS_FILE, storage, best and best[1])
    write_trials_csv(study, sweep_dir / TRIALS_FILE)
    if plots:
        write_plots(study, sweep_dir)
    return None if best is None else write_best_experiment(*best, study.study_name, sweep_dir)
