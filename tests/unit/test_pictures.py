"""The pictures a user sees first (few epochs, few trials) read right: titles clear of the
row above, whole-epoch ticks, named losses, pruned trials shown, no made-up importances."""

from __future__ import annotations

import csv
import importlib.util
import logging
from pathlib import Path

import optuna
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection

from emnist_lightning.evaluation.report import learning_curves_figure
from emnist_lightning.inference.predict import grid_figure
from emnist_lightning.tuning.results import write_plots
from emnist_lightning.tuning.study_plots import (
    NotDrawn,
    history_figure,
    importances_figure,
    intermediate_values_figure,
)

REPO = Path(__file__).resolve().parents[2]
optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {
    "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
    "dropout": optuna.distributions.FloatDistribution(0.0, 0.8),
}


def _integers(values) -> bool:
    return all(float(v).is_integer() for v in values)


def test_grid_titles_stay_clear_of_the_images_of_the_row_above() -> None:
    images = torch.rand(16, 1, 28, 28)
    figure = grid_figure(images, list("OOUUabcdefghijkl"), list("OUUOabcdefghijkl"))
    canvas = FigureCanvasAgg(figure)  # as savefig draws it
    canvas.draw()
    renderer = canvas.get_renderer()
    rows = figure.axes[:8], figure.axes[8:]
    for above, below in zip(rows[0], rows[1], strict=True):
        title = below.title.get_window_extent(renderer)
        image = above.get_window_extent(renderer)
        assert title.y1 <= image.y0, (title, image)  # display y grows upwards


def _metrics_csv(folder: Path, epochs: int, hparams: str | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "step", "train/loss", "val/loss", "val/acc"])
        for epoch in range(epochs):
            writer.writerow([epoch, epoch * 10, 3.0 - epoch, "", ""])
            writer.writerow([epoch, epoch * 10, "", 2.5 - epoch, 0.3 + 0.1 * epoch])
    if hparams is not None:
        (folder / "hparams.yaml").write_text(hparams)
    return path


@pytest.mark.parametrize("epochs", [1, 2, 3])
def test_learning_curves_tick_whole_epochs_only(tmp_path: Path, epochs: int) -> None:
    figure = learning_curves_figure(_metrics_csv(tmp_path, epochs, None))
    for axes in figure.axes:
        low, high = axes.get_xlim()
        shown = [t for t in axes.get_xticks() if low <= t <= high]
        assert shown and _integers(shown), shown
        assert set(shown) <= set(range(1, epochs + 1))


def test_learning_curves_name_the_training_loss_the_run_optimised(tmp_path: Path) -> None:
    adjusted = _metrics_csv(tmp_path / "a", 2, "logit_adjust_tau: 1.0\nlabel_smoothing: 0.1\n")
    labels = [t.get_text() for t in learning_curves_figure(adjusted).axes[0].get_legend().texts]
    assert "logit-adjusted, tau 1" in labels[0] and "label smoothing 0.1" in labels[0]
    assert labels[1].startswith("validation loss: cross-entropy")
    plain = _metrics_csv(tmp_path / "p", 2, "logit_adjust_tau: 0.0\nlabel_smoothing: 0.0\n")
    text = learning_curves_figure(plain).axes[0].get_legend().texts[0].get_text()
    assert text.startswith("training loss: cross-entropy\n")
    taught = (
        "mixing:\n  _target_: x.mixing.CutMix\ndistillation:\n  teacher: t.ckpt\n  weight: 0.5\n"
    )
    axes = learning_curves_figure(_metrics_csv(tmp_path / "t", 2, taught)).axes[0]
    label = axes.get_legend().texts[0].get_text()
    assert "cutmix blends" in label and "distilled from a teacher, weight 0.5" in label
    unknown = _metrics_csv(tmp_path / "u", 2, None)
    text = learning_curves_figure(unknown).axes[0].get_legend().texts[0].get_text()
    assert text.startswith("training loss\n")


def _trial(study: optuna.Study, values: list[float], state: str) -> None:
    trial = study.ask(SPACE)
    for step, value in enumerate(values):
        trial.report(value, step)
    if state == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, values[-1])


def test_history_shows_pruned_trials_at_their_last_value() -> None:
    study = optuna.create_study(direction="maximize")
    _trial(study, [0.3, 0.5], "complete")
    _trial(study, [0.1], "pruned")
    _trial(study, [0.4, 0.6], "complete")
    axes = history_figure(study).axes[0]
    points = {
        tuple(map(float, xy))
        for collection in axes.collections
        if isinstance(collection, PathCollection)
        for xy in collection.get_offsets()
    }
    assert points == {(0.0, 0.5), (1.0, 0.1), (2.0, 0.6)}
    assert "1 pruned" in axes.get_title()
    assert _integers(t for t in axes.get_xticks() if 0 <= t <= 2)


def test_one_reported_step_gets_one_whole_tick_not_a_sliver() -> None:
    study = optuna.create_study(direction="maximize")
    _trial(study, [0.5], "complete")
    axes = intermediate_values_figure(study).axes[0]
    assert list(axes.get_xticks()) == [0]
    assert axes.get_xlim() == (-0.5, 0.5)


def test_importances_are_not_drawn_while_optuna_rates_them_equal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study = optuna.create_study(direction="maximize")
    _trial(study, [0.5], "complete")
    with pytest.raises(NotDrawn, match="cannot rank the parameters"):
        importances_figure(study)
    stale = tmp_path / "param_importances.png"
    stale.write_bytes(b"an equal-bars picture from an earlier version")
    with caplog.at_level(logging.INFO):
        written = write_plots(study, tmp_path)
    assert not stale.exists()
    assert {p.name for p in written} == {"optimization_history.png", "intermediate_values.png"}
    assert any("param_importances.png not drawn" in r.getMessage() for r in caplog.records)
    for values in ([0.2, 0.3], [0.6, 0.9], [0.1, 0.2]):
        _trial(study, values, "complete")
    figure = importances_figure(study)
    assert "from 4 complete trials" in figure.axes[0].get_title()


def test_the_published_history_is_redrawn_with_every_trial_of_its_table(tmp_path: Path) -> None:
    script = REPO / "benchmarks" / "tune_history_plot.py"
    spec = importlib.util.spec_from_file_location("tune_history_plot", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = REPO / "docs" / "tune_trials_proxy.csv"
    study = module.study_from_trials_csv(table)
    with table.open() as f:
        states = [row["state"] for row in csv.DictReader(f)]
    title = history_figure(study).axes[0].get_title()
    assert title == (
        f"Optimization history: {states.count('COMPLETE')} complete, "
        f"{states.count('PRUNED')} pruned"
    )


def test_a_figure_that_fails_is_left_out_without_stopping_the_sweep(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emnist_lightning.tuning import study_plots

    def broken(study: optuna.Study):
        raise RuntimeError("")  # an empty message too

    monkeypatch.setitem(study_plots.FIGURES, "optimization_history.png", broken)
    study = optuna.create_study(direction="maximize")
    _trial(study, [0.5], "complete")
    with caplog.at_level(logging.WARNING):
        written = write_plots(study, tmp_path)
    assert "optimization_history.png" not in {p.name for p in written}
    assert "intermediate_values.png" in {p.name for p in written}
    assert any("not drawn (RuntimeError" in r.getMessage() for r in caplog.records)
