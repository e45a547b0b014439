"""Sweeps across processes: workers sharing a PostgreSQL study, parallel Hydra launchers.

The PostgreSQL tests start a throwaway server (tests/postgres_server.py). Outside CI they skip,
saying why, when no server can be started; in CI (env CI set) they fail instead.
"""

from __future__ import annotations

import csv
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from helpers.postgres_server import PostgresServer, PostgresUnavailable, start_postgres

from emnist_lightning.tuning.objective import available_cpus
from hydra_plugins.optuna_pruning_sweeper._storage import open_storage
from hydra_plugins.optuna_pruning_sweeper._study import OVER_BUDGET_ATTR, WORKER_ATTR

REPO = Path(__file__).resolve().parents[2]
SEED_PARAMS = ("model.lr", "model.net.dropout", "model.net.fc1_neurons", "data.batch_size")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="emnist-pg-"))  # not under pytest's root-only tmp
    try:
        server = start_postgres(root)
    except PostgresUnavailable as exc:
        shutil.rmtree(root, ignore_errors=True)
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests, but no server started: {exc}")
        pytest.skip(f"no PostgreSQL server could be started here: {exc}")
    yield server
    server.stop()


def _tune_cmd(data: Path, log_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "tune.py",
        "-m",
        f"data.data_dir={data}",
        "data.download=false",
        f"paths.log_dir={log_dir}",
        "plots=false",
        "hydra/sweeper/pruner=none",
        *overrides,
    ]


def _trials_csv(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def test_workers_starting_together_on_an_empty_database_all_open_the_study(postgres) -> None:
    """Optuna's table creation races (IntegrityError); open_storage retries until it wins.
    (This test also names the driver: postgresql+psycopg:// is the same as postgresql://.)"""
    url = postgres.create_database("race").replace("postgresql://", "postgresql+psycopg://")
    barrier = threading.Barrier(4)
    errors: list[str] = []

    def worker() -> None:
        barrier.wait()
        try:
            storage = open_storage(url, heartbeat_interval=1)
            optuna.create_study(study_name="race", storage=storage, load_if_exists=True)
        except Exception as exc:  # pragma: no cover - the failure being tested for
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(optuna.get_all_study_names(url)) == 1


@functools.cache
def _polling_storage(url: str) -> optuna.storages.RDBStorage:
    """One storage, so one connection pool, per database for the test's own polling: a fresh
    one every poll keeps its connections open until garbage collection, and on a slow machine
    they passed the server's max_connections ("too many clients already")."""
    return optuna.storages.RDBStorage(url)


def _trials_of(url: str, pids: set[int]) -> list[optuna.trial.FrozenTrial]:
    """The study's trials asked by the workers with these process ids (none before it exists)."""
    try:
        trials = optuna.load_study(study_name="pg", storage=_polling_storage(url)).get_trials()
    except KeyError:  # the study is not created yet
        return []
    return [t for t in trials if int(t.user_attrs.get(WORKER_ATTR, ":0").rsplit(":")[1]) in pids]


def _wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.slow
def test_three_postgres_workers_run_exactly_n_trials_and_a_killed_ones_trial_fails(
    postgres, tiny_emnist, tmp_path
) -> None:
    """Three tune.py workers on one postgresql:// study; the first is killed with kill -9
    in the middle of its (long) first trial while the others run. They finish the study:
    exactly n_trials counted trials, no two with the same parameters, and the killed trial
    FAIL through its missing heartbeats."""
    url = postgres.create_database("three_workers")
    n_trials = 7
    shared = [
        f"hydra.sweeper.storage={url}",
        "hydra.sweeper.study_name=pg",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=3",
    ]
    commands = [
        _tune_cmd(tiny_emnist, tmp_path / f"worker{i}", *shared, f"trainer.max_epochs={epochs}")
        for i, epochs in enumerate((500, 2, 2))
    ]

    def start(cmd: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    workers = [start(commands[0])]
    victim = workers[0]
    try:
        # The first worker gets into a trial (it has validated an epoch) ...
        _wait_for(
            lambda: any(t.intermediate_values for t in _trials_of(url, {victim.pid})),
            "the first worker's trial",
        )
        (killed_trial,) = [t.number for t in _trials_of(url, {victim.pid})]
        # ... the other two join the study, and the first dies in the middle of its trial.
        workers += [start(commands[1]), start(commands[2])]

        def others() -> set[int]:
            return {w.pid for w in workers[1:]}

        _wait_for(
            lambda: len({t.user_attrs[WORKER_ATTR] for t in _trials_of(url, others())}) == 2,
            "both other workers' first trials",
        )
        assert victim.poll() is None, "the first worker ended before it could be killed"
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        for worker in workers[1:]:
            _, stderr = worker.communicate(timeout=600)
            assert worker.returncode == 0, stderr[-3000:]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    study = optuna.load_study(study_name="pg", storage=url)
    counted = [t for t in study.get_trials() if not t.user_attrs.get(OVER_BUDGET_ATTR)]
    assert len(counted) == n_trials
    states = {t.number: t.state for t in counted}
    assert states[killed_trial] == optuna.trial.TrialState.FAIL
    not_complete = [n for n, s in states.items() if s != optuna.trial.TrialState.COMPLETE]
    assert not_complete == [killed_trial]
    params = {tuple(t.params[p] for p in SEED_PARAMS) for t in counted}
    assert len(params) == n_trials  # no two trials drew the same point
    survivors = {t.user_attrs[WORKER_ATTR] for t in counted if t.number != killed_trial}
    assert len(survivors) == 2  # both surviving workers ran trials
    rows = _trials_csv(tmp_path / "worker1" / "tune" / "pg")
    assert len(rows) == n_trials and sum(r["state"] == "FAIL" for r in rows) == 1


@pytest.mark.slow
def test_joblib_launcher_runs_two_trials_at_once_with_a_share_of_the_cores(
    tiny_emnist, tmp_path
) -> None:
    result = subprocess.run(
        _tune_cmd(
            tiny_emnist,
            tmp_path,
            "hydra/launcher=joblib",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.study_name=joblib",
            "trainer.max_epochs=1",
        ),
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "tune" / "joblib"
    storage = open_storage(str(sweep / "optuna.journal"))
    trials = optuna.load_study(study_name="joblib", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    sweeper_pids = {t.user_attrs[WORKER_ATTR].rsplit(":", 1)[1] for t in trials}
    job_pids = {str(t.user_attrs["job_pid"]) for t in trials}
    # The two trials ran at once, each in a process of its own.
    assert len(sweeper_pids) == 1 and len(job_pids) == 2 and not job_pids & sweeper_pids
    assert [len(t.intermediate_values) for t in trials] == [1, 1]
    # threads_per_trial=auto: the cores shared by the two trials running at once.
    assert {t.user_attrs["torch_threads"] for t in trials} == {max(1, available_cpus() // 2)}
    assert "joblib" in result.stderr + result.stdout


@pytest.mark.slow
def test_submitit_local_launcher_runs_trials_as_separate_jobs(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "curve_task.py",
            "-m",
            f"hydra.sweep.dir={tmp_path}",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=5",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.n_trials=2",
        ],
        cwd=REPO / "tests" / "sweep_task",
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _trials_csv(tmp_path)
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"]
    assert all(r["epochs"] == "4" for r in rows)  # each job reported to the study
    jobs = [p for p in (tmp_path / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2  # two submitit jobs, one per trial


def test_a_trial_planted_in_a_shared_postgres_study_cannot_reach_the_retrain(
    postgres, tmp_path
) -> None:
    from helpers.planted_trial import (
        assert_nothing_planted_reaches_the_retrain,
        plant_trials,
        write_tuned,
    )

    url = postgres.create_database("planted")
    victim = tmp_path / "victim"
    plant_trials(open_storage(url), "shared", victim)
    write_tuned(url, "shared", tmp_path / "sweep")
    assert_nothing_planted_reaches_the_retrain(tmp_path / "sweep", victim)
    assert not victim.exists()
