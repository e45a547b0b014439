"""What a sweep leaves in its folder: optimization_results.yaml, trials.csv and Optuna's plots.

optimization_results.yaml has the official plugin's keys (name, best_params and best_value;
for several objectives the Pareto `solutions`) plus the study's bookkeeping. Every worker of a
study writes these files, so each is replaced in one step.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from ._storage import display_spec
from ._study import is_counted
from .trial import WORKER_ATTR, trial_fixed_overrides

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
TRIALS_FILE = "trials.csv"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace `path` in one step, so a reader (or a worker writing at the same time) never
    sees half a file."""
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data.encode() if isinstance(data, str) else data)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def epochs_run(trial: FrozenTrial) -> int:
    """Steps a trial reported (epochs, for a task that reports once per epoch)."""
    return len(trial.intermediate_values)


def study_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials without those given back unrun (see _study.is_counted)."""
    return [t for t in study.get_trials(deepcopy=False) if is_counted(t)]


def state_counts(study: optuna.Study) -> dict[str, int]:
    return dict(Counter(t.state.name for t in study_trials(study)))


def is_multi_objective(study: optuna.Study) -> bool:
    return len(study.directions) > 1


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial of a one-objective study (None while there is none)."""
    if is_multi_objective(study) or not study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE,)
    ):
        return None
    return study.best_trial


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The complete trials no other complete trial beats in every objective."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    return sorted(study.best_trials, key=lambda t: t.number)


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    trials = study_trials(study)
    param_names = sorted({name for t in trials for name in t.params})
    n_values = len(study.directions)
    value_names = ["value"] if n_values == 1 else [f"value_{i}" for i in range(n_values)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["number", "state", *value_names, *param_names, "epochs", "duration_s", "worker"]
    )
    for t in trials:
        duration = t.duration.total_seconds() if t.duration else ""
        values = t.values or [""] * n_values
        writer.writerow(
            [t.number, t.state.name, *values]
            + [t.params.get(name, "") for name in param_names]
            + [epochs_run(t), duration, t.user_attrs.get(WORKER_ATTR, "")]
        )
    write_atomic(path, buffer.getvalue())


def results_summary(study: optuna.Study, storage: str) -> dict[str, Any]:
    """The content of optimization_results.yaml."""
    directions = [d.name.lower() for d in study.directions]
    summary: dict[str, Any] = {"name": "optuna"}
    if is_multi_objective(study):
        summary["solutions"] = [
            {"number": t.number, "params": dict(t.params), "values": [float(v) for v in t.values]}
            for t in pareto_trials(study)
        ]
    else:
        best = best_trial(study)
        summary.update(
            best_params=None if best is None else dict(best.params),
            best_value=None if best is None else float(best.value),
            best_trial=None if best is None else best.number,
            best_overrides=None if best is None else trial_fixed_overrides(best),
        )
    summary.update(
        study_name=study.study_name,
        storage=display_spec(storage),
        direction=directions[0] if len(directions) == 1 else directions,
        trials=state_counts(study),
    )
    return summary


def write_results_yaml(study: optuna.Study, path: Path, storage: str) -> None:
    write_atomic(path, yaml.safe_dump(results_summary(study, storage), sort_keys=False))


def _plots(study: optuna.Study) -> dict[str, Any]:
    from optuna.visualization import matplotlib as optuna_plots

    if is_multi_objective(study):
        return {"pareto_front.png": optuna_plots.plot_pareto_front}
    return {
        "optimization_history.png": optuna_plots.plot_optimization_history,
        "param_importances.png": optuna_plots.plot_param_importances,
        "intermediate_values.png": optuna_plots.plot_intermediate_values,
    }


def write_plots(study: optuna.Study, sweep_dir: Path) -> list[Path]:
    """Optuna's matplotlib plots (the Pareto front for several objectives); each is skipped
    with a note when the study is too small for it."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    written = []
    for name, plot in _plots(study).items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = plot(study)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.tight_layout()
            buffer = io.BytesIO()
            figure.savefig(buffer, dpi=120, format="png")
            plt.close(figure)
            write_atomic(sweep_dir / name, buffer.getvalue())
            written.append(sweep_dir / name)
        except Exception as exc:  # e.g. importances need two complete trials
            log.info("Skipped %s: %s", name, exc)
    return written


def write_all(study: optuna.Study, sweep_dir: Path, storage: str, plots: bool) -> None:
    """Write every result file, each replaced atomically."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_results_yaml(study, sweep_dir / RESULTS_FILE, storage)
    write_trials_csv(study, sweep_dir / TRIALS_FILE)
    if plots:
        write_plots(study, sweep_dir)
