"""What a sweep leaves in its folder: best params, every trial, plots, a retrain config."""

from __future__ import annotations

import csv
import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
TRIALS_FILE = "trials.csv"
BEST_EXPERIMENT_FILE = "best_experiment.yaml"
# Keys of a trial's job that describe the search, not the model: left out of the retrain config.
_SEARCH_ONLY_KEYS = ("trainer.max_epochs", "trainer.limit_", "trial_number", "hydra.", "test")
# Keys that describe this machine, not the model: passed on the retrain command line instead.
_MACHINE_KEYS = ("paths.", "data.data_dir", "data.download")


def epochs_run(trial: FrozenTrial) -> int:
    """Epochs a trial validated: the pruning callback reports once per epoch."""
    return len(trial.intermediate_values)


def state_counts(study: optuna.Study) -> dict[str, int]:
    return dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    trials = study.get_trials(deepcopy=False)
    param_names = sorted({name for t in trials for name in t.params})
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["number", "state", "value", *param_names, "epochs", "duration_s", "worker"]
        )
        for t in trials:
            duration = t.duration.total_seconds() if t.duration else ""
            writer.writerow(
                [t.number, t.state.name, "" if t.value is None else t.value]
                + [t.params.get(name, "") for name in param_names]
                + [epochs_run(t), duration, t.user_attrs.get("worker", "")]
            )


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    return study.best_trial


def write_results_yaml(study: optuna.Study, path: Path, storage: str) -> None:
    best = _best_trial(study)
    results: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": storage,
        "direction": study.direction.name.lower(),
        "trials": state_counts(study),
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else float(best.value),
        "best_params": None if best is None else dict(best.params),
    }
    path.write_text(yaml.safe_dump(results, sort_keys=False))


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _is_search_only(override: str) -> bool:
    return _key(override).startswith(_SEARCH_ONLY_KEYS + _MACHINE_KEYS)


def machine_overrides(fixed: list[str]) -> list[str]:
    """The fixed overrides a retrain needs on its command line (data location, paths)."""
    return [o for o in fixed if _key(o).startswith(_MACHINE_KEYS)]


def best_experiment_yaml(best: FrozenTrial, fixed: list[str], study_name: str) -> str:
    """An `experiment` config that retrains the best trial with train.py's full length."""
    group_choices: dict[str, str] = {}
    values: dict[str, Any] = {}
    for override in [*fixed, *(f"{k}={v}" for k, v in best.params.items())]:
        if _is_search_only(override):
            continue
        key, value = override.lstrip("+").split("=", 1)
        parsed = yaml.safe_load(value) if value else None
        if "/" in key or ("." not in key and isinstance(parsed, str)):
            group_choices[key] = value  # a config group choice such as model=seed_cnn
        else:
            values[key] = best.params.get(key, parsed)
    nested: dict[str, Any] = {}
    for key, value in values.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    header = (
        "# @package _global_\n"
        f"# Best trial {best.number} of study '{study_name}' (best validation accuracy "
        f"{best.value:.4f}).\n"
    )
    body: dict[str, Any] = {}
    if group_choices:
        body["defaults"] = [{f"override /{k}": v} for k, v in group_choices.items()]
    body.update(nested)
    return header + yaml.safe_dump(body, sort_keys=False)


def write_best_experiment(
    study: optuna.Study, fixed: list[str], sweep_dir: Path, experiment_dir: Path | None
) -> Path | None:
    """Write the retrain config in the sweep folder and, if given, as conf/experiment/tuned/<study>.yaml."""
    best = _best_trial(study)
    if best is None:
        return None
    text = best_experiment_yaml(best, fixed, study.study_name)
    (sweep_dir / BEST_EXPERIMENT_FILE).write_text(text)
    if experiment_dir is None:
        return None
    experiment_dir.mkdir(parents=True, exist_ok=True)
    target = experiment_dir / f"{study.study_name}.yaml"
    target.write_text(text)
    return target


def write_plots(study: optuna.Study, sweep_dir: Path) -> list[Path]:
    """Optuna's matplotlib plots; each is skipped with a note when the study is too small."""
    from optuna.visualization import matplotlib as optuna_plots

    written = []
    plots = {
        "optimization_history.png": optuna_plots.plot_optimization_history,
        "param_importances.png": optuna_plots.plot_param_importances,
        "intermediate_values.png": optuna_plots.plot_intermediate_values,
    }
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = plot(study)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.tight_layout()
            figure.savefig(sweep_dir / name, dpi=120)
            plt.close(figure)
            written.append(sweep_dir / name)
        except Exception as exc:  # e.g. importances need two complete trials
            log.info("Skipped %s: %s", name, exc)
    return written


def write_all(
    study: optuna.Study,
    sweep_dir: Path,
    storage: str,
    fixed: list[str],
    experiment_dir: Path | None,
    plots: bool = True,
) -> Path | None:
    """Write every result file; returns the generated experiment config path (if any)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_results_yaml(study, sweep_dir / RESULTS_FILE, storage)
    write_trials_csv(study, sweep_dir / TRIALS_FILE)
    if plots:
        write_plots(study, sweep_dir)
    return write_best_experiment(study, fixed, sweep_dir, experiment_dir)
