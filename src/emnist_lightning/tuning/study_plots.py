"""A study's pictures that read right after a handful of trials, the case a user meets first.

Optuna's own plots mislead on small studies: its history leaves pruned trials out, its
importance plot draws equal bars when it has too few trials to rank the parameters (it says
so only in a warning), and a single reported step sits on a fractional, near-empty axis.
Here each figure either shows what the study holds, or is not drawn and the reason is given.
Plain Optuna + matplotlib: nothing of EMNIST.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import matplotlib
import optuna
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from emnist_lightning.errors import first_line
from emnist_lightning.plot_axes import integer_x_axis

matplotlib.use("Agg")  # files only; never open a window


class NotDrawn(Exception):
    """Why a figure is not drawn (the message is shown to the user)."""


def _stopped_value(trial: FrozenTrial) -> float | None:
    """A pruned trial's value: the one it was told with, else the last it reported."""
    if trial.value is not None:
        return trial.value
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def history_figure(study: optuna.Study) -> Figure:
    """Every finished trial's value by trial number: complete ones, pruned ones at the value
    they had when stopped, and the best (complete) value so far."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [(t, _stopped_value(t)) for t in trials if t.state == TrialState.PRUNED]
    pruned = [(t, v) for t, v in pruned if v is not None and math.isfinite(v)]
    if not complete and not pruned:
        raise NotDrawn("no trial has finished with a value yet")
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    if complete:
        axes.scatter(
            [t.number for t in complete], [t.value for t in complete], label="complete", zorder=3
        )
        better = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        best, xs, ys = None, [], []
        for trial in sorted(complete, key=lambda t: t.number):
            best = trial.value if best is None else better(best, trial.value)
            xs.append(trial.number)
            ys.append(best)
        axes.step(xs, ys, where="post", color="tab:red", alpha=0.6, label="best so far")
    if pruned:
        axes.scatter(
            [t.number for t, _ in pruned],
            [v for _, v in pruned],
            marker="x",
            color="tab:orange",
            label="pruned (value when stopped)",
            zorder=3,
        )
    numbers = [t.number for t in trials]
    integer_x_axis(axes, numbers)
    failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    axes.set(
        xlabel="trial",
        ylabel="objective value",
        title=f"Optimization history: {len(complete)} complete, {len(pruned)} pruned"
        + (f", {failed} failed" if failed else ""),
    )
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return figure


def intermediate_values_figure(study: optuna.Study) -> Figure:
    """The values each trial reported step by step (pruned trials dashed, ending in an x)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        raise NotDrawn("no trial has reported an intermediate value yet")
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    steps: list[int] = []
    for trial in trials:
        xs = sorted(trial.intermediate_values)
        ys = [trial.intermediate_values[x] for x in xs]
        steps += xs
        was_pruned = trial.state == TrialState.PRUNED
        (line,) = axes.plot(
            xs,
            ys,
            marker="o",
            markersize=5,
            linestyle="--" if was_pruned else "-",
            label=f"trial {trial.number}" + (" (pruned)" if was_pruned else ""),
        )
        if was_pruned:
            axes.plot(xs[-1], ys[-1], marker="x", markersize=9, color=line.get_color())
    integer_x_axis(axes, steps)
    axes.set(
        xlabel="step (Lightning pruning callback: epoch index, from 0)",
        ylabel="reported value",
        title="Intermediate values",
    )
    axes.grid(True, alpha=0.3)
    if len(trials) <= 12:
        axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    return figure


def importances_figure(study: optuna.Study) -> Figure:
    """Optuna's parameter importances, unless it cannot tell the parameters apart (too few
    trials: it then rates them all equal, which a bar chart would present as a finding)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            importances = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError) as exc:
            raise NotDrawn(first_line(exc)) from None
    said_equal = any("equal" in str(w.message) for w in caught)
    values = list(importances.values())
    if len(values) < 2:
        raise NotDrawn("only one parameter is searched: there is nothing to rank")
    if said_equal or max(values) - min(values) < 1e-9:
        raise NotDrawn(
            f"with {len(complete)} complete trial(s) Optuna cannot rank the parameters "
            "(it rates them all equal); it is drawn once it can"
        )
    figure = Figure(figsize=(7, 0.5 * len(values) + 1.8))
    axes = figure.add_subplot()
    names = list(importances)[::-1]
    bars = axes.barh(names, [importances[n] for n in names])
    axes.bar_label(bars, fmt="%.2f", padding=3, fontsize=8)
    axes.set(
        xlabel="importance (sums to 1)",
        title=f"Parameter importances from {len(complete)} complete trials",
    )
    axes.set_xlim(0, max(values) * 1.15)
    axes.grid(True, axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


# File name -> figure builder; a builder raises NotDrawn to say why there is no picture.
FIGURES: dict[str, Callable[[optuna.Study], Figure]] = {
    "optimization_history.png": history_figure,
    "param_importances.png": importances_figure,
    "intermediate_values.png": intermediate_values_figure,
}


def pareto_figure(study: optuna.Study) -> Figure:
    """Optuna's Pareto-front plot of a study with two or three objectives (axes named by the
    study's metric names where set)."""
    from optuna.visualization import matplotlib as optuna_plots

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise NotDrawn("no trial has completed yet")
    if len(study.directions) > 3:
        raise NotDrawn(f"Optuna draws the front of 2 or 3 objectives, not {len(study.directions)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = optuna_plots.plot_pareto_front(study, target_names=study.metric_names)
    figure = axes.figure
    figure.set_size_inches(7, 5)
    figure.tight_layout()
    return figure


# Several objectives: the front replaces the one-objective pictures.
PARETO_FIGURES: dict[str, Callable[[optuna.Study], Figure]] = {
    "pareto_front.png": pareto_figure,
}
