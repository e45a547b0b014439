import csv
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.console import console_problems
from helpers.emnist_fixtures import write_emnist_fixture

REPO = Path(__file__).resolve().parents[2]
SEED_PARAMS = ("model.lr", "model.net.dropout", "model.net.fc1_neurons", "data.batch_size")


@pytest.fixture(scope="module")
def sweep_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_emnist_fixture(
        tmp_path_factory.mktemp("tune_data"), train_per_class=10, test_per_class=1
    )


def _conf_files() -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in (REPO / "conf").rglob("*")}


def _tune_cmd(data: Path, log_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "tune.py",
        "-m",
        f"data.data_dir={data}",
        "data.download=false",
        f"paths.log_dir={log_dir}",
        "trainer.max_epochs=2",
        "hydra.sweeper.n_trials=3",
        *overrides,
    ]


def _run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _trials(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "trials.csv").open() as f:
        return list(csv.DictReader(f))


def _finished(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r["state"] in ("COMPLETE", "PRUNED", "FAIL")]


def test_sweep_writes_every_result_and_its_printed_retrain_command_works(
    sweep_data, tmp_path
) -> None:
    conf_before = _conf_files()
    result = _run(
        _tune_cmd(
            sweep_data,
            tmp_path,
            "hydra.sweeper.study_name=smoke",
            "hydra/sweeper/pruner=none",
            "model.lr=tag(log,interval(1e-4,1e-2))",
            # A deletion reaches the retrain command (it crashed the results writer once).
            "~callbacks.model_checkpoint.enable_version_counter",
        )
    )
    output = result.stderr + result.stdout
    assert [p for p in console_problems(output) if not p.startswith("printed twice")] == []
    # Trials are quiet: the sweeper's line per trial, not Lightning's and train's own lines.
    assert "GPU available" not in output and "Results (" not in output
    sweep = tmp_path / "tune" / "smoke"
    rows = _trials(sweep)
    assert [int(r["number"]) for r in rows] == [0, 1, 2]
    assert all(r["state"] == "COMPLETE" and r["epochs"] == "2" for r in rows)
    assert all(1e-4 <= float(r["model.lr"]) <= 1e-2 for r in rows)  # the command-line space won
    assert {*SEED_PARAMS} <= set(rows[0])
    summary = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(rows, key=lambda r: float(r["value"]))
    assert summary["best_trial"] == int(best["number"])
    assert summary["best_value"] == pytest.approx(float(best["value"]))
    assert summary["trials"] == {"COMPLETE": 3}
    assert f"data.data_dir={sweep_data}" in summary["best_overrides"]
    for plot in ("optimization_history.png", "intermediate_values.png", "param_importances.png"):
        assert (sweep / plot).stat().st_size > 1000, plot
    for number in range(3):
        assert (sweep / f"trial_{number}" / "metrics.json").is_file()
    assert "Trial 3/3" in output
    assert not list(sweep.glob(".*.tmp"))  # atomic writes leave no temporary files
    assert _conf_files() == conf_before  # nothing written into the source tree

    tuned = yaml.safe_load((sweep / "experiment" / "tuned.yaml").read_text())
    assert tuned["model"]["lr"] == pytest.approx(summary["best_params"]["model.lr"])
    assert tuned["data"]["batch_size"] == summary["best_params"]["data.batch_size"]
    # Run the retrain command exactly as printed (plus a short, quiet run).
    printed = re.search(r"Retrain the best trial at full length: (python train\.py .*)", output)
    assert printed, output[-2000:]
    command = shlex.split(printed.group(1))
    assert command[:2] == ["python", "train.py"]
    assert "~callbacks.model_checkpoint.enable_version_counter" in command
    retrain = _run(
        [
            sys.executable,
            *command[1:],
            f"paths.log_dir={tmp_path / 'retrain'}",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "++callbacks.progress_bar=null",
        ]
    )
    (run,) = (tmp_path / "retrain" / "train" / "runs").iterdir()
    resolved = yaml.safe_load((run / "config_resolved.yaml").read_text())
    assert (
        resolved["model"]["net"]["fc1_neurons"] == summary["best_params"]["model.net.fc1_neurons"]
    )
    assert "test/acc" in retrain.stderr + retrain.stdout


@pytest.mark.slow
def test_bad_trials_are_pruned_and_stop_early(sweep_data, tmp_path) -> None:
    _run(
        _tune_cmd(
            sweep_data,
            tmp_path,
            "hydra.sweeper.study_name=prune",
            "hydra.sweeper.n_trials=6",
            "trainer.max_epochs=3",
            'hydra.sweeper.params.model.lr="choice(1e-7,0.005)"',
            "hydra/sweeper/pruner=median",
            "hydra.sweeper.pruner.n_startup_trials=1",
            "hydra.sweeper.pruner.n_warmup_steps=0",
        )
    )
    rows = _trials(tmp_path / "tune" / "prune")
    assert len(_finished(rows)) == 6
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert pruned and complete
    assert max(int(r["epochs"]) for r in pruned) < min(int(r["epochs"]) for r in complete) == 3
    assert all(float(r["model.lr"]) in (1e-7, 0.005) for r in rows)


@pytest.mark.slow
def test_killed_sweep_resumes_keeping_finished_trials(sweep_data, tmp_path) -> None:
    cmd = _tune_cmd(
        sweep_data,
        tmp_path,
        "hydra.sweeper.study_name=resume",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.pruner=none",
        # Long enough that trial 0 is surely still training when it is killed (30 epochs of
        # the tiny fixture could end within the second the test waits).
        "trainer.max_epochs=10000",
        # The killed sweeper stops beating; after 2 s its trial is stale.
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=2",
    )
    sweep = tmp_path / "tune" / "resume"
    process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while (
            time.time() < deadline
            and process.poll() is None
            and not (sweep / "trial_0" / "checkpoints" / "last.ckpt").exists()
        ):
            time.sleep(0.1)
        time.sleep(1.0)
        assert process.poll() is None, "the sweep ended before it could be killed"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert (sweep / "optuna.journal").is_file()

    # Resume with short trials so the rest of the study is quick.
    cmd[cmd.index("trainer.max_epochs=10000")] = "trainer.max_epochs=1"
    result = _run(cmd)
    rows = _trials(sweep)
    assert len(rows) == len(_finished(rows)) == 4
    assert rows[0]["state"] == "FAIL"  # the trial the kill interrupted
    assert [r["state"] for r in rows[1:]] == ["COMPLETE"] * 3
    assert "Marked interrupted trial(s) [0] as FAIL" in result.stderr + result.stdout

    again = _run(cmd)  # the budget is spent: nothing more runs
    assert "Trial " not in again.stderr + again.stdout
    assert len(_trials(sweep)) == 4


@pytest.mark.slow
def test_two_workers_share_one_study_without_losing_or_repeating_trials(
    sweep_data, tmp_path
) -> None:
    cmd = _tune_cmd(
        sweep_data,
        tmp_path,
        "hydra.sweeper.study_name=shared",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.pruner=none",
        "trainer.max_epochs=1",
        "plots=false",
    )
    workers = [
        subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
    rows = _trials(tmp_path / "tune" / "shared")
    assert sorted(int(r["number"]) for r in rows) == list(range(6))
    assert len(_finished(rows)) == 6
    assert len({r["worker"] for r in rows}) == 2  # both workers took trials
    params = {tuple(r[p] for p in SEED_PARAMS) for r in rows}
    assert len(params) == 6  # no two trials drew the same point


def test_trials_that_raise_or_return_nan_fail_and_the_sweep_goes_on(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "flaky_task.py",
            "-m",
            f"hydra.sweep.dir={tmp_path}",
            "hydra.sweeper.max_failure_rate=0.9",  # 2 of the first 3 fail: go on regardless
        ],
        cwd=REPO / "tests" / "sweep_task",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _trials(tmp_path)
    assert [r["state"] for r in rows] == [
        "COMPLETE",
        "FAIL",
        "FAIL",
        "COMPLETE",
        "COMPLETE",
        "COMPLETE",
    ]
    assert "this trial breaks on purpose" in result.stderr + result.stdout
    summary = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert summary["trials"] == {"COMPLETE": 4, "FAIL": 2}
    assert not math.isnan(summary["best_value"])


@pytest.mark.slow
def test_a_planted_trial_in_the_sweeps_journal_never_reaches_the_retrain(
    sweep_data, tmp_path
) -> None:
    from helpers.planted_trial import plant_trials, targets
    from omegaconf import OmegaConf

    from hydra_plugins.optuna_pruning_sweeper._storage import open_storage

    sweep = tmp_path / "tune" / "shared"
    sweep.mkdir(parents=True)
    victim = tmp_path / "victim"
    plant_trials(open_storage(str(sweep / "optuna.journal")), "shared", victim)
    result = _run(
        _tune_cmd(
            sweep_data, tmp_path, "hydra.sweeper.study_name=shared", "hydra/sweeper/pruner=none"
        )
    )
    output = result.stderr + result.stdout
    assert "Trial 1: left out of the retrain config" in output  # the planted one is the best
    text = (sweep / "experiment" / "tuned.yaml").read_text()
    assert "evil" not in text and "_target_" not in text and str(victim) not in text, text
    tuned = yaml.safe_load(text)
    assert tuned["model"]["lr"] == 0.02  # the planted trial's one value inside the space
    printed = re.search(r"Retrain the best trial at full length: (python train\.py .*)", output)
    assert printed and str(victim) not in printed.group(1)
    retrain = _run(
        [
            sys.executable,
            *shlex.split(printed.group(1))[1:],
            f"paths.log_dir={tmp_path / 'retrain'}",
            "trainer.max_epochs=1",
            "test=false",
            "trainer.enable_progress_bar=false",
            "++callbacks.progress_bar=null",
        ]
    )
    assert retrain.returncode == 0 and not victim.exists()  # no payload was instantiated
    (run,) = (tmp_path / "retrain" / "train" / "runs").iterdir()
    resolved = yaml.safe_load((run / "config_resolved.yaml").read_text())
    assert "evil" not in resolved["callbacks"] and "evil" not in (resolved.get("logger") or {})
    assert not any(t.startswith("os.") for t in targets(OmegaConf.create(resolved)))


@pytest.mark.slow
def test_a_multi_objective_sweep_writes_its_pareto_front_and_a_picked_trials_experiment(
    sweep_data, tmp_path
) -> None:
    """Accuracy against model size: no single best trial, so the user picks one."""
    cmd = _tune_cmd(
        sweep_data,
        tmp_path,
        "hydra.sweeper.study_name=pareto",
        "trainer.max_epochs=1",
        "objective=[val/acc_best,params]",
        "hydra.sweeper.direction=[maximize,minimize]",
    )
    result = _run(cmd)
    output = result.stdout + result.stderr
    sweep = tmp_path / "tune" / "pareto"
    assert "Pruning does not apply to several objectives" in output  # the default pruner
    summary = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert summary["direction"] == ["maximize", "minimize"]
    solutions = summary["solutions"]
    assert solutions and all(len(s["values"]) == 2 for s in solutions)
    rows = {int(r["number"]): r for r in _trials(sweep)}
    for s in solutions:  # values are the trial's accuracy and its parameter count
        assert float(rows[s["number"]]["value_1"]) == s["values"][1] > 1000
    assert (sweep / "pareto_front.png").stat().st_size > 1000
    assert not (sweep / "experiment").exists() and "pick=<trial>" in output

    picked = solutions[-1]["number"]
    again = _run([*cmd, f"pick={picked}"])  # the study is complete: only the pick is written
    assert "Trial " not in again.stdout + again.stderr
    tuned = yaml.safe_load((sweep / "experiment" / "tuned.yaml").read_text())
    assert tuned["model"]["lr"] == pytest.approx(solutions[-1]["params"]["model.lr"])
    assert f"Trial {picked} of study 'pareto'" in (sweep / "experiment" / "tuned.yaml").read_text()
