"""The sweeper's own behaviour, mostly on training-free tasks (tests/sweep_task) so it is fast:
failure cap, one-line config errors, samplers and pruners, folders, budget, heartbeats."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from emnist_lightning.errors import ConfigError
from emnist_lightning.tuning.objective import parallel_trials, trial_threads
from hydra_plugins.optuna_pruning_sweeper._errors import SweepConfigError
from hydra_plugins.optuna_pruning_sweeper._storage import open_storage, storage_spec
from hydra_plugins.optuna_pruning_sweeper._study import (
    OVER_BUDGET_ATTR,
    ask_trial,
    component_config,
    fail_stale_trials,
    remaining_budget,
)
from hydra_plugins.optuna_pruning_sweeper.config import PRUNERS, SAMPLERS

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "tests" / "sweep_task"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SPACE = {
    "x": FloatDistribution(0.0, 1.0),
    "layers": IntDistribution(1, 4),
    "width": CategoricalDistribution([32, 64, 128]),
}


def _curve(*overrides: str, cwd: Path = TASKS) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TASKS / "curve_task.py"), "-m", *overrides],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _trials(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "trials.csv").open() as f:
        return list(csv.DictReader(f))


# ---- failures ----


def test_a_study_whose_trials_all_fail_stops_early_with_an_error(tmp_path) -> None:
    result = _curve(f"hydra.sweep.dir={tmp_path}", "fail=true", "hydra.sweeper.n_trials=20")
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert "3 of the 3 trials this sweep ran failed" in error_lines[0]
    assert "every trial breaks on purpose" in error_lines[0]
    assert [r["state"] for r in _trials(tmp_path)] == ["FAIL"] * 3  # 17 trials left for later


def test_a_trials_user_error_stops_the_sweep_in_one_line(tmp_path) -> None:
    """A one-line error raised in a trial (missing data files, say) would hit every trial."""
    result = _curve(f"hydra.sweep.dir={tmp_path}", "user_error=true")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: EMNIST files missing in nowhere/ (a user error on purpose)"
    )
    assert [r["state"] for r in _trials(tmp_path)] == ["FAIL"]  # told, not left RUNNING


# ---- one-line config errors, found before any trial is asked ----

BAD_SWEEPS = {
    "n_trials": (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 is invalid"),
    "reversed bounds": (["model.lr=interval(0.1,0.001)"], "`low <= high` must hold"),
    "log with a 0 bound": (["model.lr=tag(log,interval(0,0.1))"], "`low > 0` must hold"),
    "direction": (["hydra.sweeper.direction=maximise"], "use maximize or minimize"),
    "bad value": (["model.net.dropout=interval(0.5,1.5)"], "model.net.dropout=1.5 is invalid"),
    "unknown key": (["model.lrx=interval(0.1,0.2)"], "Could not override 'model.lrx'"),
    "unreachable storage": (
        ["hydra.sweeper.storage=postgresql://nobody@127.0.0.1:1/optuna"],
        "cannot open storage postgresql://nobody@127.0.0.1:1/optuna",
    ),
    "unknown sampler": (["hydra.sweeper.sampler=annealing"], "unknown sampler 'annealing'"),
}


@pytest.mark.parametrize("case", list(BAD_SWEEPS))
@pytest.mark.slow
def test_bad_sweep_settings_are_one_line_errors_before_any_trial(case, tmp_path) -> None:
    overrides, message = BAD_SWEEPS[case]
    result = subprocess.run(
        [sys.executable, "tune.py", "-m", f"paths.log_dir={tmp_path}", *overrides],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    journal = tmp_path / "tune" / "emnist_seed_cnn" / "optuna.journal"
    assert not journal.exists() or "trial" not in journal.read_text()  # no trial was asked


def test_an_unwritable_sweep_folder_is_a_one_line_error(tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = _curve(f"hydra.sweep.dir={blocker / 'sweep'}")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: cannot write the sweep folder {blocker / 'sweep'}")
    )


# ---- samplers, pruners, folders ----


# grid: a discrete space only (its own test); motpe: refused (Optuna removed it).
@pytest.mark.parametrize("sampler", sorted(set(SAMPLERS) - {"grid", "motpe"}))
def test_every_sampler_preset_draws_distinct_points_within_the_space(sampler) -> None:
    study = optuna.create_study(direction="maximize")
    cfg = {**component_config(sampler, "sampler"), "seed": 0}
    points = set()
    for _ in range(8):
        trial = ask_trial(study, SPACE, cfg, n_trials=8, overrides=[])
        assert trial is not None
        assert 0.0 <= trial.params["x"] <= 1.0 and trial.params["width"] in (32, 64, 128)
        points.add(tuple(trial.params.values()))
        study.tell(trial, trial.params["x"])
    assert len(points) == 8


@pytest.mark.parametrize("pruner", list(PRUNERS))
def test_every_pruner_preset_builds_and_judges_reported_epochs(pruner) -> None:
    from hydra.utils import instantiate

    study = optuna.create_study(direction="maximize", pruner=instantiate(PRUNERS[pruner]))
    pruned = 0
    for number in range(8):
        trial = ask_trial(study, SPACE, {**component_config("random", "sampler"), "seed": 0}, 8, [])
        good = number < 4  # later trials learn slower: a pruner should stop some
        for epoch in range(4):
            trial.report((0.9 if good else 0.1) * (epoch + 1) / 4, epoch)
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                pruned += 1
                break
        else:
            study.tell(trial, 0.9 if good else 0.1)
    assert (pruned == 0) == (pruner == "none")


def test_sampler_and_pruner_choices_work_from_the_command_line(tmp_path) -> None:
    result = _curve(
        f"hydra.sweep.dir={tmp_path}",
        "hydra/sweeper/sampler=cmaes",
        "hydra/sweeper/pruner=hyperband",
        "x=interval(0.5,1.0)",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _trials(tmp_path)
    assert len(rows) == 6 and {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"}
    assert all(0.5 <= float(r["x"]) <= 1.0 for r in rows)


@pytest.mark.parametrize("storage", ["default journal", "sqlite:///study.db"])
@pytest.mark.slow
def test_trials_find_the_study_when_jobs_run_in_their_own_folder(storage, tmp_path) -> None:
    """hydra.job.chdir=true with a relative sweep folder and a relative storage path."""
    overrides = [] if storage == "default journal" else [f"hydra.sweeper.storage={storage}"]
    result = _curve("hydra.sweep.dir=sweep", "hydra.job.chdir=true", *overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _trials(tmp_path / "sweep")
    assert len(rows) == 6 and all(int(r["epochs"]) >= 1 for r in rows)  # every trial reported
    assert (tmp_path / ("sweep/optuna.journal" if overrides == [] else "study.db")).is_file()


@pytest.mark.slow
def test_the_experiment_config_keeps_the_overrides_the_best_trial_ran_with(tmp_path) -> None:
    """tune.py's results_callback, on a task that is not ours: it writes tuned.yaml from the
    overrides the best trial ran with, also when a later run had others."""
    sweep = f"hydra.sweep.dir={tmp_path}"
    hook = "hydra.sweeper.results_callback=emnist_lightning.tuning.results.write_sweep_results"
    first = _curve(sweep, "bonus=10", "hydra.sweeper.n_trials=2", "hydra/sweeper/pruner=none")
    assert first.returncode == 0, first.stderr[-2000:]
    assert not (tmp_path / "experiment").exists()  # the plugin alone writes no tuned.yaml
    # A later run (or another worker) with other fixed overrides writes the results now.
    second = _curve(sweep, "bonus=0", "hydra.sweeper.n_trials=4", "hydra/sweeper/pruner=none", hook)
    assert second.returncode == 0, second.stderr[-2000:]
    summary = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert summary["best_trial"] in (0, 1) and summary["best_overrides"] == ["bonus=10"]
    tuned = yaml.safe_load((tmp_path / "experiment" / "tuned.yaml").read_text())
    assert tuned["bonus"] == 10 and tuned["x"] == pytest.approx(summary["best_params"]["x"])


# ---- budget, heartbeats, storages (in-process) ----


def test_a_trial_asked_after_the_budget_is_taken_is_given_back_uncounted(tmp_path) -> None:
    storage = open_storage(str(tmp_path / "study.journal"))
    study = optuna.create_study(study_name="budget", storage=storage, direction="maximize")
    # Two workers passed the budget check at once for the last place: both ask.
    first = ask_trial(study, SPACE, component_config("random", "sampler"), n_trials=1, overrides=[])
    second = ask_trial(
        study, SPACE, component_config("random", "sampler"), n_trials=1, overrides=[]
    )
    assert first is not None and second is None
    (given_back,) = [t for t in study.get_trials() if t.user_attrs.get(OVER_BUDGET_ATTR)]
    assert given_back.number == 1 and given_back.state == TrialState.FAIL
    assert remaining_budget(study, 1) == 0


def test_a_journal_trial_without_heartbeats_goes_stale_and_fails(tmp_path) -> None:
    storage = open_storage(str(tmp_path / "study.journal"), heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="beats", storage=storage)
    alive = ask_trial(study, SPACE, None, n_trials=2, overrides=[])
    dead = ask_trial(study, SPACE, None, n_trials=2, overrides=[])
    storage.record_heartbeat(dead._trial_id)
    for _ in range(3):  # the live trial keeps beating, the dead one stopped
        time.sleep(1)
        storage.record_heartbeat(alive._trial_id)
    assert fail_stale_trials(study) == [dead.number]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.FAIL]


def test_a_missing_database_driver_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(SweepConfigError, match=r"pip install 'psycopg\[binary\]'") as error:
        open_storage("postgresql://user:secret@127.0.0.1:5432/optuna")
    assert "user:***@" in str(error.value) and "secret" not in str(error.value)


def test_relative_storage_paths_are_anchored_to_the_launch_folder(tmp_path) -> None:
    assert storage_spec(None, "logs/tune/s", tmp_path) == str(
        tmp_path / "logs/tune/s/optuna.journal"
    )
    assert storage_spec("sqlite:///s.db", "x", tmp_path) == f"sqlite:///{tmp_path}/s.db"
    assert storage_spec("sqlite:////abs/s.db", "x", tmp_path) == "sqlite:////abs/s.db"
    assert storage_spec("postgresql://h/db", "x", tmp_path) == "postgresql://h/db"


def test_threads_per_trial_auto_shares_the_cores_only_between_parallel_trials(
    monkeypatch,
) -> None:
    monkeypatch.setattr("emnist_lightning.tuning.objective.available_cpus", lambda: 8)
    assert trial_threads("auto", 1) is None  # one trial at a time: torch's default
    assert trial_threads("auto", 2) == 4
    assert trial_threads("auto", 16) == 1
    assert trial_threads(3, 2) == 3
    with pytest.raises(ConfigError):
        trial_threads(0, 1)
    # Hydra's basic launcher runs a batch of n_jobs trials one after another.
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    for target, expected in ((basic, 1), (joblib, 4)):
        hydra_cfg = OmegaConf.create({"launcher": {"_target_": target}, "sweeper": {"n_jobs": 4}})
        assert parallel_trials(hydra_cfg) == expected


def test_starting_hydra_imports_no_training_or_optuna_code() -> None:
    """Hydra imports every hydra_plugins module at every start (predict.py --help too)."""
    code = (
        "import sys\n"
        "from hydra.core.plugins import Plugins\n"
        "Plugins.instance()\n"
        "heavy = ('torch', 'lightning', 'optuna', 'optuna_integration', 'matplotlib')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_changing_the_direction_of_an_existing_study_is_refused_in_one_line(tmp_path) -> None:
    common = (f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.n_trials=1")
    assert _curve(*common).returncode == 0  # the study is created to maximize
    result = _curve(*common, "hydra.sweeper.direction=minimize", "hydra.sweeper.n_trials=2")
    assert result.returncode == 2, result.stderr[-2000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "was created to maximize" in error_lines[0]
    assert len(_trials(tmp_path)) == 1  # nothing ran under the other direction


def test_the_sweeper_plugin_imports_nothing_of_this_project() -> None:
    """The plugin is generic: every module of it loads without emnist_lightning."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import hydra_plugins.optuna_pruning_sweeper as plugin\n"
        "for info in pkgutil.iter_modules(plugin.__path__):\n"
        "    importlib.import_module(f'{plugin.__name__}.{info.name}')\n"
        "print(sorted(m for m in sys.modules if m.startswith('emnist_lightning')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_trials_of_one_worker_share_one_database_storage(tmp_path, monkeypatch) -> None:
    """Each database storage holds a pool of connections for the process's life: the trials
    a worker runs in-process must reuse one (PostgreSQL ran out of connections otherwise)."""
    from hydra_plugins.optuna_pruning_sweeper import _storage
    from hydra_plugins.optuna_pruning_sweeper.trial import _load_trial, _trial_storage

    opened = []
    monkeypatch.setattr(
        _storage, "open_storage", lambda spec: opened.append(spec) or open_storage(spec)
    )
    _trial_storage.cache_clear()

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="shared", storage=url)
    first, second = study.ask().number, study.ask().number
    hydra_cfg = OmegaConf.create(
        {
            "sweeper": {"study_name": "shared", "storage": url, "pruner": None},
            "sweep": {"dir": str(tmp_path)},
            "runtime": {"cwd": str(tmp_path)},
        }
    )
    trials = [_load_trial(hydra_cfg, number) for number in (first, second)]
    assert [t.number for t in trials] == [first, second]
    assert opened == [url]
