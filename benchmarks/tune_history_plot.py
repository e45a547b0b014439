"""Draw a sweep's optimization history from its trials.csv (what tune.py writes beside it), so a
published figure can be redrawn after the study's storage is gone.

    python benchmarks/tune_history_plot.py docs/tune_trials_proxy.csv docs/images/tune_optimization_history.png

The table's trials are rebuilt as an in-memory Optuna study (number, state, value, and the
epochs a pruned trial ran as its last step) and drawn by the tuner's own history figure.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import optuna
from optuna.trial import TrialState

from emnist_lightning.tuning.study_plots import history_figure


def study_from_trials_csv(path: Path, direction: str = "maximize") -> optuna.Study:
    """The finished trials of a trials.csv as a study (parameters are not needed to draw)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction)
    with path.open() as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["number"]))
    for row in rows:
        if row["state"] not in ("COMPLETE", "PRUNED") or not row["value"]:
            continue
        value = float(row["value"])
        last_step = max(int(row["epochs"] or 1) - 1, 0)
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState[row["state"]],
                value=value,
                intermediate_values={last_step: value},
            )
        )
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trials_csv", type=Path)
    parser.add_argument("out_png", type=Path)
    parser.add_argument("--direction", default="maximize", choices=["maximize", "minimize"])
    args = parser.parse_args()
    figure = history_figure(study_from_trials_csv(args.trials_csv, args.direction))
    figure.savefig(args.out_png, dpi=120)
    print(f"wrote {args.out_png}")


if __name__ == "__main__":
    main()
