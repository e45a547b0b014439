"""The sweeper as a drop-in for Hydra's official Optuna sweeper, on a generic app
(tests/sweep_task/sphere_task.py): what the official plugin documents and tests, through real
`-m` runs with the plugin's own defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "tests" / "sweep_task"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _sphere(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(TASKS / "sphere_task.py"),
            "-m",
            f"hydra.sweep.dir={tmp_path}",
            *overrides,
        ],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def _results(sweep: Path) -> dict:
    return yaml.safe_load((sweep / "optimization_results.yaml").read_text())


def _study(sweep: Path, name: str = "sphere") -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep / "optuna.journal"))
    )
    return optuna.load_study(study_name=name, storage=storage)


def _job_overrides(sweep: Path) -> list[list[str]]:
    return [
        list(OmegaConf.load(path))
        for path in sorted(sweep.glob("*/.hydra/overrides.yaml"), key=lambda p: int(p.parts[-3]))
    ]


def test_a_generic_app_sweeps_with_fixed_values_deletions_and_the_official_defaults(
    tmp_path,
) -> None:
    """`~z` deletes a key in every job, `y=0` fixes one (not a param), `x=choice(...)`
    replaces the config's range; the app's `+model.lr` is nobody's business but its own."""
    output = _ok(
        _sphere(tmp_path, "~z", "y=0", "x=choice(0, 1, 2)", "+model.lr=interval(0.0, 1.0)")
    )
    results = _results(tmp_path)
    study = _study(tmp_path)
    assert results["name"] == "optuna" and results["direction"] == "minimize"  # the default
    assert results["best_params"] == study.best_trial.params
    assert results["best_value"] == study.best_value < 100  # z (100) was deleted
    assert set(results["best_params"]) == {"x", "+model.lr"} and "y" not in results["best_params"]
    jobs = _job_overrides(tmp_path)
    assert len(jobs) == 8  # n_trials
    assert all(job[:2] == ["~z", "y=0"] for job in jobs)
    assert not any("trial_number" in o for job in jobs for o in job)  # nothing added unasked
    assert not (tmp_path / "experiment").exists() and "Retrain" not in output
    assert not list(tmp_path.glob("*.png"))  # plots are opt-in


@pytest.mark.parametrize("returns", ["float32", "tensor"])
@pytest.mark.slow
def test_any_value_float_takes_is_a_result(returns, tmp_path) -> None:
    _ok(_sphere(tmp_path, f"returns={returns}", "hydra.sweeper.n_trials=3"))
    assert _results(tmp_path)["trials"] == {"COMPLETE": 3}


@pytest.mark.parametrize("returns", ["pair", "list"])
@pytest.mark.slow
def test_several_objectives_write_their_pareto_front(returns, tmp_path) -> None:
    output = _ok(
        _sphere(
            tmp_path,
            f"returns={returns}",
            "hydra.sweeper.direction=[minimize,minimize]",
            "hydra/sweeper/sampler=nsgaii",
            "hydra.sweeper.sampler.population_size=4",
            "hydra/sweeper/pruner=median",  # asked for, but cannot apply: one line says so
            "hydra.sweeper.plots=true",
            "hydra.sweeper.n_trials=10",
        )
    )
    solutions = _results(tmp_path)["solutions"]
    front = _study(tmp_path).best_trials
    assert sorted(s["number"] for s in solutions) == sorted(t.number for t in front)
    for a in solutions:
        assert len(a["values"]) == 2 and set(a["params"]) == {"x", "y"}
        for b in solutions:  # no solution dominates another
            assert not all(p <= q for p, q in zip(a["values"], b["values"], strict=True)) or (
                a["values"] == b["values"]
            )
    assert (tmp_path / "pareto_front.png").stat().st_size > 1000
    assert output.count("Pruning does not apply to several objectives") == 1


def test_a_value_count_that_does_not_match_the_directions_fails_the_trial(tmp_path) -> None:
    result = _sphere(
        tmp_path, "returns=pair", "hydra.sweeper.n_trials=2", "hydra.sweeper.max_failure_rate=1.0"
    )
    assert result.returncode == 0
    assert _results(tmp_path)["trials"] == {"FAIL": 2}
    assert "not a number" in result.stdout + result.stderr


def test_the_grid_sampler_visits_each_point_once_and_caps_n_trials(tmp_path) -> None:
    output = _ok(
        _sphere(
            tmp_path,
            "hydra/sweeper/sampler=grid",
            "hydra.sweeper.n_trials=20",
            "x=choice(-1, 1)",
            "y=range(-1, 2)",  # the grid takes range's values without its end: -1, 0, 1
        )
    )
    points = sorted((t.params["x"], t.params["y"]) for t in _study(tmp_path).trials)
    assert points == [(x, y) for x in (-1, 1) for y in (-1, 0, 1)]
    assert "The grid has 6 points: n_trials is 6, not 20" in output


def test_custom_search_space_adds_conditional_and_new_keys(tmp_path) -> None:
    _ok(
        _sphere(
            tmp_path,
            "hydra.sweeper.custom_search_space=sphere_task.configure",
            "max_z_difference_from_x=0.3",
        )
    )
    for trial in _study(tmp_path).trials:
        assert abs(trial.params["z"] - trial.params["x"]) <= 0.3
        assert 0.0 <= trial.params["+w"] <= 1.0
    best = _results(tmp_path)["best_params"]
    assert {"x", "y", "z", "+w"} == set(best)


def test_a_fixed_value_in_params_fixes_the_key(tmp_path) -> None:
    _ok(_sphere(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.params.y=0.5"))
    jobs = _job_overrides(tmp_path)
    assert all("y=0.5" in job for job in jobs)
    assert set(_results(tmp_path)["best_params"]) == {"x"}


def test_sampler_options_of_the_official_configs_are_accepted(tmp_path) -> None:
    _ok(
        _sphere(
            tmp_path,
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.sampler.multivariate=true",
            "hydra.sweeper.sampler.n_ei_candidates=8",
            "hydra.sweeper.sampler.consider_endpoints=true",
            "hydra.sweeper.sampler.n_startup_trials=2",
        )
    )
    assert _results(tmp_path)["trials"] == {"COMPLETE": 4}


@pytest.mark.parametrize("sampler", ["gp", "qmc"])
def test_gp_and_qmc_samplers_run(sampler, tmp_path) -> None:
    _ok(
        _sphere(
            tmp_path,
            f"hydra/sweeper/sampler={sampler}",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.n_jobs=1",
        )
    )
    assert _results(tmp_path)["trials"] == {"COMPLETE": 3}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hydra/sweeper/sampler=motpe"], "The 'motpe' sampler was removed in Optuna 4.0"),
        (["hydra/sweeper/sampler=qmc"], "the qmc sampler runs with one worker only"),
        (["hydra/sweeper/sampler=grid", "x=interval(0, 1)"], "the grid sampler takes only choice"),
        (["hydra.sweeper.direction=[minimize,sideways]"], "use maximize or minimize, or a list"),
        (["hydra.sweeper.custom_search_space=nowhere.configure"], "cannot be imported"),
    ],
)
def test_settings_that_cannot_work_are_one_line_errors_before_any_trial(
    overrides, message, tmp_path
) -> None:
    result = _sphere(tmp_path, *overrides)  # n_jobs is 2 by default: qmc is refused
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, result.stderr[-2000:]
    assert not (tmp_path / "optuna.journal").exists()


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_failures_stop_the_sweep_with_the_trials_exception_type(rate, tmp_path) -> None:
    result = _sphere(tmp_path, "error=true", f"hydra.sweeper.max_failure_rate={rate}")
    if rate == 0.0:  # the default: the first failed batch stops the sweep
        assert result.returncode == 1
        assert "RuntimeError: cfg.error is True" in result.stderr.strip().splitlines()[-1]
        assert _results(tmp_path)["trials"] == {"FAIL": 2}  # one batch of n_jobs=2
    else:
        assert result.returncode == 0 and "RuntimeError: cfg.error is True" not in result.stderr
        assert _results(tmp_path)["trials"] == {"FAIL": 8}


def test_a_sweep_with_no_search_space_runs_its_trials(tmp_path) -> None:
    _ok(_sphere(tmp_path, "hydra.sweeper.n_trials=2", "hydra.sweeper.params=null"))
    assert _results(tmp_path)["trials"] == {"COMPLETE": 2}
