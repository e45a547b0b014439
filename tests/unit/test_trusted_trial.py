"""A study's storage is shared data: a planted trial cannot put objects into tuned.yaml."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from helpers.planted_trial import (
    assert_nothing_planted_reaches_the_retrain,
    plant_trials,
    write_tuned,
)
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import create_trial

from emnist_lightning.tuning.trusted_trial import trusted_trial


def test_a_trial_planted_in_a_journal_file_cannot_reach_the_retrain(
    tmp_path: Path, caplog, monkeypatch
) -> None:
    from emnist_lightning.tuning import results

    # The warning is said once per trial number per process: an earlier test's trial 1 counts.
    monkeypatch.setattr(results, "_warned", set())
    journal = str(tmp_path / "optuna.journal")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    victim = tmp_path / "victim"
    plant_trials(storage, "shared", victim)
    with caplog.at_level(logging.WARNING):
        write_tuned(journal, "shared", tmp_path / "sweep")
    assert_nothing_planted_reaches_the_retrain(tmp_path / "sweep", victim)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith("Trial 1: left out of the retrain config")
    assert "callbacks.evil" in warned[0] and "\n" not in warned[0]
    assert not victim.exists()


def test_parameters_must_lie_in_the_sweeps_own_distributions() -> None:
    space = {
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "width": IntDistribution(8, 64),
        "opt": CategoricalDistribution(["adam", "sgd"]),
    }
    trial = create_trial(
        params={"lr": 0.5, "width": 16, "opt": "sgd"},
        distributions={
            "lr": FloatDistribution(0, 1),
            "width": IntDistribution(8, 64),
            "opt": CategoricalDistribution(["adam", "sgd"]),
        },
        value=1.0,
    )
    trusted = trusted_trial(trial, space, [])
    assert trusted.params == {"width": 16, "opt": "sgd"} and trusted.dropped == ["lr=0.5"]


def test_overrides_are_kept_only_as_this_sweep_sets_them() -> None:
    fixed = ["data.batch_size=64", "+model.extra=3", "experiment=fast", "~model.scheduler"]
    recorded = [
        "data.batch_size=256",  # same key, a number in range
        "data.batch_size=0",  # out of range
        "data.batch_size=true",  # another type
        "+model.extra=3",  # exactly ours
        "+model.extra=4",  # an add this sweep makes, with another value
        "experiment=fast",
        "experiment=best",  # another group choice
        "~model.scheduler",
        "model.lr=0.1",  # a key this sweep does not set
    ]
    trial = create_trial(value=1.0, user_attrs={"overrides": recorded})
    trusted = trusted_trial(trial, {}, fixed)
    assert trusted.overrides == [
        "data.batch_size=256",
        "+model.extra=3",
        "experiment=fast",
        "~model.scheduler",
    ]
