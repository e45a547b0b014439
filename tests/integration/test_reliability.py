"""Faults and bad input: one clear line, exit status 2, nothing already written lost."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from helpers.configs import compose_config
from helpers.emnist_fixtures import write_emnist_fixture

from emnist_lightning.data.idx_files import expected_files, raw_folder
from emnist_lightning.errors import CheckpointError, ConfigError, DataFilesError
from emnist_lightning.evaluation.evaluate import evaluate
from emnist_lightning.inference.model_files import (
    RUNNING,
    best_of_run,
    fit_status,
    read_checkpoint,
    resolve_model_path,
)
from emnist_lightning.inference.predict import predict
from emnist_lightning.models.nets import SeedCNN
from emnist_lightning.models.optimizers import MuonWithAdamW
from emnist_lightning.training.checkpoint_io import AtomicCheckpointIO
from emnist_lightning.training.run import train

REPO = Path(__file__).resolve().parents[2]
KILL_AT_WRITE = REPO / "tests" / "helpers" / "kill_at_write.py"
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cli(script: str, *overrides: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / script), *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
        **kwargs,
    )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [
        line
        for line in result.stderr.strip().splitlines()
        if line and "UserWarning" not in line and not line.startswith((" ", "\t"))
    ]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# -- run folders and checkpoint folders ------------------------------------------------------
@pytest.mark.slow
def test_two_runs_started_at_once_get_their_own_folders(tiny_emnist: Path, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "train.py",
        f"data.data_dir={tiny_emnist}",
        "data.download=false",
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
        f"paths.log_dir={tmp_path}",
        *QUIET,
    ]
    processes = [
        subprocess.Popen(command, cwd=REPO, env=_env(), stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]
    runs = sorted((tmp_path / "train" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert [p.name for p in (run / "checkpoints").glob("*.ckpt")].count("last.ckpt") == 1
        assert len(list((run / "checkpoints").glob("epoch_*.ckpt"))) == 1


def _slow_run_command(data: Path, logs: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "train.py",
        f"data.data_dir={data}",
        "data.download=false",
        "data.batch_size=8",
        f"paths.log_dir={logs}",
        "test=false",
        "logger=none",
        *QUIET,
        *extra,
    ]


@pytest.mark.slow
def test_resuming_a_run_that_is_still_training_is_refused_until_it_is_gone(
    tmp_path: Path,
) -> None:
    data = write_emnist_fixture(tmp_path / "data", train_per_class=40, test_per_class=1)
    logs = tmp_path / "logs"
    process = subprocess.Popen(
        _slow_run_command(data, logs, "trainer.max_epochs=100"),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = logs / "train" / "runs"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(runs.glob("*/checkpoints/last.ckpt")):
            time.sleep(0.05)
        assert list(runs.glob("*/checkpoints/last.ckpt")), "no last.ckpt was written"
        refused = subprocess.run(
            _slow_run_command(data, logs, "trainer.max_epochs=2", "ckpt_path=last"),
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        line = _one_error_line(refused)
        assert "is in use by a run that is still training (pid" in line
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    (last,) = runs.glob("*/checkpoints/last.ckpt")
    epoch = torch.load(last, weights_only=True)["epoch"]
    # Its owner is gone: the lock it left is no obstacle.
    resumed = subprocess.run(
        _slow_run_command(data, logs, f"trainer.max_epochs={epoch + 2}", "ckpt_path=last"),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(last, weights_only=True)["epoch"] == epoch + 1


@pytest.mark.parametrize("point", ["before-3", "after-3", "before-4", "after-4"])
@pytest.mark.slow
def test_a_kill_at_any_checkpoint_write_leaves_last_and_best_consistent(
    point: str, tiny_emnist: Path, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    killed = subprocess.run(
        [
            sys.executable,
            str(KILL_AT_WRITE),
            point,
            f"data.data_dir={tiny_emnist}",
            "data.download=false",
            "data.batch_size=64",
            "trainer.max_epochs=3",
            # Every epoch is a new best, so epoch 1 replaces epoch 0's best file.
            "callbacks.model_checkpoint.monitor=epoch",
            "logger=none",
            f"paths.log_dir={logs}",
            *QUIET,
        ],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    runs = logs / "train" / "runs"
    (folder,) = runs.glob("*/checkpoints")
    partials = list(folder.glob(".*.partial"))
    assert bool(partials) == point.startswith("before")
    last = read_checkpoint(folder / "last.ckpt")
    assert last["epoch"] == (1 if point == "after-4" else 0)
    assert fit_status(folder) == RUNNING  # killed: ckpt_path=best skips this run
    best = best_of_run(folder / "last.ckpt")  # refuses if last.ckpt names a missing file
    assert read_checkpoint(best)["epoch"] == last["epoch"]

    # Resume to the end, test stage included (it loads the best checkpoint).
    cfg = compose_config(
        "train",
        [
            f"data.data_dir={tiny_emnist}",
            "data.download=false",
            "data.batch_size=64",
            "trainer.max_epochs=3",
            "callbacks.model_checkpoint.monitor=epoch",
            "logger=none",
            "ckpt_path=last",
            "trainer.accelerator=cpu",
            *QUIET,
        ],
        tmp_path / "resumed",
    )
    cfg.paths.log_dir = str(logs)
    metrics = train(cfg)
    assert metrics["epochs"] == 3 and "test/acc" in metrics
    assert not list(folder.glob(".*.partial"))  # the next run cleaned them up
    # A best file whose deletion the kill prevented (after-4) is removed on resume too.
    assert len(list(folder.glob("epoch_*.ckpt"))) == 1
    assert read_checkpoint(resolve_model_path("best", runs))["epoch"] == 2


class _FailsHalfway:
    """Pickles to a few bytes, then fails: a save interrupted in the middle of writing."""

    def __reduce__(self):
        raise pickle.PicklingError("interrupted while writing")


def test_a_save_that_fails_partway_keeps_the_previous_checkpoint_and_no_partial(
    tmp_path: Path,
) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 4}, path)
    with pytest.raises(pickle.PicklingError):
        io.save_checkpoint(
            {"state_dict": {"w": torch.zeros(10_000)}, "epoch": 5, "x": _FailsHalfway()}, path
        )
    assert read_checkpoint(path)["epoch"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_an_unwritable_checkpoint_folder_is_one_clear_error_not_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)  # the clean-up must not raise a second error
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*last.ckpt \(Permission"):
        AtomicCheckpointIO().save_checkpoint({"epoch": 1}, tmp_path / "last.ckpt")


def test_resuming_into_another_model_names_what_differs(make_train_cfg, tmp_path: Path) -> None:
    train(make_train_cfg("trainer.max_epochs=1", "test=false", output_dir=tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    with pytest.raises(
        CheckpointError,
        match=r"\(net: seed_cnn vs bn_cnn; net.dropout: 0.339.* vs 0.3; net.fc1_neurons: 196 vs 256",
    ):
        train(make_train_cfg(f"ckpt_path={last}", "model=bn_cnn"))
    with pytest.raises(CheckpointError, match=r"\(net.fc1_neurons: 196 vs 100; checkpoint vs"):
        train(make_train_cfg(f"ckpt_path={last}", "model.net.fc1_neurons=100"))
    # Validation would mix plain and shifted scores in one best-checkpoint race.
    with pytest.raises(CheckpointError, match=r"\(test_time_shift: 0 vs 1; checkpoint vs"):
        train(make_train_cfg(f"ckpt_path={last}", "model.test_time_shift=1"))


def test_resuming_with_another_optimizer_is_refused_in_one_line(
    make_train_cfg, tmp_path: Path
) -> None:
    train(make_train_cfg("trainer.max_epochs=1", "test=false", output_dir=tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    muon = "model.optimizer._target_=emnist_lightning.models.optimizers.MuonWithAdamW"
    with pytest.raises(
        CheckpointError,
        match=r"last.ckpt was trained with optimizer torch.optim.Adam, this run configures emnist_",
    ):
        train(make_train_cfg(f"ckpt_path={last}", muon, "test=false"))
    train(make_train_cfg(muon, "trainer.max_epochs=1", output_dir=tmp_path / "muon"))
    with pytest.raises(CheckpointError, match=r"optimizer emnist_lightning.models.optimizers.Muon"):
        train(make_train_cfg(f"ckpt_path={tmp_path}/muon/checkpoints/last.ckpt", "test=false"))
    assert not (tmp_path / "run").exists()  # refused before any training


def test_muon_refuses_another_optimizers_state_in_one_line() -> None:
    optimizer = MuonWithAdamW(SeedCNN().parameters())
    adam_state = torch.optim.Adam(SeedCNN().parameters()).state_dict()
    with pytest.raises(CheckpointError, match="optimizer state is not MuonWithAdamW's: resume"):
        optimizer.load_state_dict(adam_state)


# experiment=fast without its one-cycle schedule, whose length is fixed by the first run's
# epochs: resuming it exercises MuonWithAdamW's state. CutMix draws its boxes and partners,
# and a teacher scores every batch: a resume must draw and score as the straight run did.
@pytest.mark.parametrize(
    "recipe",
    [
        [],
        ["experiment=fast", "model.scheduler=null"],
        ["model/mixing=cutmix"],
        ["model/distillation=teacher", "model.distillation.teacher={teacher}"],
    ],
    ids=["default", "muon", "cutmix", "distilled"],
)
def test_a_resumed_run_ends_bit_for_bit_equal_to_a_straight_run(
    recipe: list[str], make_train_cfg, tmp_path: Path, tiny_trained_logs: Path
) -> None:
    teacher = tiny_trained_logs / "train" / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    recipe = [override.format(teacher=teacher) for override in recipe]
    common = ("deterministic=true", "test=false", "data/augment=affine", *recipe)
    train(make_train_cfg(*common, output_dir=tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(make_train_cfg(*common, "trainer.max_epochs=3", f"ckpt_path={last}"))
    train(make_train_cfg(*common, "trainer.max_epochs=3", output_dir=tmp_path / "straight"))
    resumed = read_checkpoint(last)["state_dict"]
    straight = read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")["state_dict"]
    assert resumed.keys() == straight.keys()
    for key in resumed:
        assert torch.equal(resumed[key], straight[key]), key


# -- bad data --------------------------------------------------------------------------------
def _with_bad_labels(source: Path, target: Path, train: bool) -> Path:
    shutil.copytree(source, target)
    labels = raw_folder(target) / expected_files("balanced", train)[1]
    raw = bytearray(labels.read_bytes())
    raw[8 + 5] = 200  # the sixth label names class 200 of 47
    labels.write_bytes(bytes(raw))
    return target


@pytest.mark.parametrize("stage", ["train", "test"])
def test_labels_outside_the_split_are_refused_before_training(
    stage: str, tiny_emnist: Path, make_train_cfg, tmp_path: Path
) -> None:
    data = _with_bad_labels(tiny_emnist, tmp_path / "data", train=stage == "train")
    cfg = make_train_cfg(data_dir=data, output_dir=tmp_path / "run")
    with pytest.raises(
        DataFilesError, match=rf"{stage}-labels-idx1-ubyte has 1 label\(s\) outside"
    ):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any training


def test_evaluate_refuses_labels_outside_the_split(tiny_emnist: Path, tmp_path: Path) -> None:
    data = _with_bad_labels(tiny_emnist, tmp_path / "data", train=False)
    cfg = compose_config(
        "evaluate",
        [f"ckpt_path={tmp_path}/none.ckpt", f"data.data_dir={data}", "data.download=false"],
        tmp_path / "out",
    )
    legacy = REPO / "tests" / "fixtures" / "legacy_v0" / "seed_cnn.ckpt"
    cfg.ckpt_path = str(legacy)
    with pytest.raises(DataFilesError, match="outside split 'balanced'"):
        evaluate(cfg)


def test_a_damaged_test_file_is_found_before_training(
    tiny_emnist: Path, make_train_cfg, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_emnist, data)
    images = raw_folder(data) / expected_files("balanced", False)[0]
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataFilesError, match="test-images-idx3-ubyte is corrupt"):
        train(make_train_cfg(data_dir=data, output_dir=tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_validation_fraction_that_leaves_no_images_is_refused(
    make_train_cfg, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"data.val_fraction=0.001 leaves no validation images"):
        train(make_train_cfg("data.val_fraction=0.001"))


def test_progress_bar_off_alone_works(tiny_emnist: Path, tmp_path: Path) -> None:
    cfg = compose_config(
        "train",
        [
            f"data.data_dir={tiny_emnist}",
            "data.download=false",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "test=false",
            "logger=none",
        ],
        tmp_path / "run",
    )
    assert cfg.callbacks.progress_bar is not None  # no ++callbacks.progress_bar=null needed
    assert train(cfg)["epochs"] == 1


# -- bad values on the command line ----------------------------------------------------------
def test_a_log_path_that_is_a_file_is_one_line_and_leaves_nothing(
    tiny_emnist: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file, not a folder")
    result = _cli("train.py", f"data.data_dir={tiny_emnist}", f"paths.log_dir={blocker}")
    line = _one_error_line(result)
    assert line.startswith(f"error: cannot write the run folder {blocker}/train/runs/")
    assert blocker.read_text() == "a file, not a folder"


@pytest.fixture
def open_tmp_path(tmp_path: Path):
    """A temp folder every user can reach (pytest's own are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="emnist-perm-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_unwritable_log_and_checkpoint_folders_are_one_line_each(
    tiny_emnist: Path, open_tmp_path: Path
) -> None:
    """Run as an unprivileged user (root ignores permissions), as a user would."""
    base = open_tmp_path
    data = base / "data"
    shutil.copytree(tiny_emnist, data)
    run = base / "run"
    train(
        compose_config(
            "train",
            [f"data.data_dir={data}", "data.download=false", "trainer.max_epochs=1",
             "test=false", "logger=none", "trainer.accelerator=cpu", *QUIET],
            run,
        )
    )  # fmt: skip
    read_only, writable, home = base / "read_only", base / "writable", base / "home"
    for folder in (read_only, writable, home):
        folder.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot drop privileges")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        probe = subprocess.run([*prefix, sys.executable, "-c", ""], cwd=REPO, capture_output=True)
        if probe.returncode != 0:
            pytest.skip("user 65534 cannot run this Python or reach the repository")
        for folder in (writable, home):
            os.chown(folder, 65534, 65534)
    for path in [data, *data.rglob("*"), run, *run.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    read_only.chmod(0o555)
    (run / "checkpoints").chmod(0o555)
    env = {**_env(), "HOME": str(home), "MPLCONFIGDIR": str(home)}
    base_command = [*prefix, sys.executable, "train.py", f"data.data_dir={data}",
                    "data.download=false", "trainer.max_epochs=2", *QUIET]  # fmt: skip

    unwritable_logs = subprocess.run(
        [*base_command, f"paths.log_dir={read_only}/logs"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    line = _one_error_line(unwritable_logs)
    assert "cannot write the run folder" in line and "Permission denied" in line

    read_only_checkpoints = subprocess.run(
        [*base_command, f"paths.log_dir={writable}", f"ckpt_path={run}/checkpoints/last.ckpt"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    line = _one_error_line(read_only_checkpoints)
    assert f"cannot write into checkpoint folder {run}/checkpoints" in line
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0  # kept as it was
    assert not list((writable / "train" / "runs").glob("*"))  # the refused run left nothing


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("top_k=0", "top_k=0 is invalid: it must be a whole number >= 1"),
        ("random_test=-1", "random_test=-1 is invalid: it must be a whole number in \\[0, 256\\]"),
        ("data.split=everything", "data.split='everything' is invalid: it must be one of"),
    ],
)
def test_predict_refuses_bad_values_in_one_line(
    override: str, message: str, tiny_emnist: Path, tmp_path: Path
) -> None:
    legacy = REPO / "tests" / "fixtures" / "legacy_v0" / "seed_cnn.ckpt"
    cfg = compose_config(
        "predict",
        [f"ckpt_path={legacy}", "random_test=2", f"data.data_dir={tiny_emnist}", override],
        tmp_path,
    )
    with pytest.raises(ConfigError, match=message):
        predict(cfg)


@pytest.mark.slow
def test_evaluate_refuses_an_unknown_split_in_one_line(tmp_path: Path) -> None:
    result = _cli("evaluate.py", "data.split=everything", f"hydra.run.dir={tmp_path / 'out'}")
    line = _one_error_line(result)
    assert line.startswith("error: data.split='everything' is invalid: it must be one of balanced")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_train_refuses_an_out_of_range_value_leaving_no_run_folder(
    tiny_emnist: Path, tmp_path: Path
) -> None:
    result = _cli(
        "train.py", f"data.data_dir={tiny_emnist}", "model.lr=nan", f"paths.log_dir={tmp_path}"
    )
    assert _one_error_line(result).startswith("error: model.lr=nan is invalid")
    assert not list((tmp_path / "train" / "runs").glob("*"))


def test_best_that_is_gone_is_refused_not_replaced_by_older_weights(
    make_train_cfg, tmp_path: Path
) -> None:
    runs = tmp_path / "logs" / "train" / "runs"
    train(make_train_cfg("trainer.max_epochs=1", "test=false", output_dir=runs / "run"))
    (best,) = (runs / "run" / "checkpoints").glob("epoch_*.ckpt")
    assert resolve_model_path("best", runs) == best
    best.unlink()
    with pytest.raises(
        CheckpointError,
        match="records .* as its best checkpoint but no such .ckpt file is beside it",
    ):
        resolve_model_path("best", runs)
