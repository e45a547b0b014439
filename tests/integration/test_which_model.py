"""Which model answers `ckpt_path=best`: the newest *finished* run's best checkpoint, named
with its training record; runs that did not finish are skipped and the rule says so."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from emnist_lightning.errors import CheckpointError
from emnist_lightning.inference.model_files import (
    FINISHED,
    FIT_STATUS_NAME,
    RUNNING,
    choose_model_file,
    fit_status,
    newest_finished_last_checkpoint,
    read_checkpoint,
    write_fit_status,
)
from emnist_lightning.inference.which_model import announce_model, read_provenance
from emnist_lightning.models.provenance import Provenance
from emnist_lightning.training.run import train

REPO = Path(__file__).resolve().parents[2]
LEGACY = REPO / "tests" / "fixtures" / "legacy_v0"


@pytest.fixture(scope="module")
def finished_run(tiny_emnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch run that finished its fit (train.py's own code path, in-process)."""
    from helpers.configs import compose_config

    runs = tmp_path_factory.mktemp("which") / "runs"
    overrides = [
        f"data.data_dir={tiny_emnist}",
        "data.download=false",
        "data.batch_size=64",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "test=false",
    ]
    train(compose_config("train", overrides, runs / "finished"))
    return runs / "finished"


def _newer_copy(run: Path, name: str, status: str | None) -> Path:
    """A copy of `run` whose last.ckpt is the newest, with the given fit status (None: none)."""
    copy = run.parent / name
    shutil.copytree(run, copy)
    (copy / "checkpoints" / FIT_STATUS_NAME).unlink()
    if status is not None:
        write_fit_status(copy / "checkpoints", status)
    last = copy / "checkpoints" / "last.ckpt"
    newer = last.stat().st_mtime + 60
    os.utime(last, (newer, newer))
    return copy


@pytest.mark.slow
def test_a_finished_run_records_its_status_and_each_checkpoint_its_training(
    finished_run: Path,
) -> None:
    assert fit_status(finished_run / "checkpoints") == FINISHED
    best = choose_model_file("best", finished_run.parent).path
    record = read_provenance(best)
    checkpoint = read_checkpoint(best)
    assert record.run == "finished"
    assert record.epochs == checkpoint["epoch"] + 1 and record.max_epochs == 2
    # The validation figure is the one the checkpoint was chosen by (its file name says it).
    assert f"val_acc_{record.val_acc:.4f}" in best.name
    assert record.saved_at is not None
    assert record.experiment is None  # composed in-process: no experiment= choice recorded


def test_best_skips_newer_runs_that_did_not_finish_and_says_so(
    finished_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = finished_run.parent
    killed = _newer_copy(finished_run, "killed", RUNNING)
    try:
        choice = choose_model_file("best", runs)
        last, skipped = newest_finished_last_checkpoint(runs)
        assert (last, skipped) == (finished_run / "checkpoints" / "last.ckpt", 1)
        assert "newest finished run" in choice.rule
        assert "skipped 1 newer run that did not finish" in choice.rule
        # last means the newest last.ckpt, finished or not, and says that too.
        last = choose_model_file("last", runs)
        assert last.path == killed / "checkpoints" / "last.ckpt"
        assert "finished or not" in last.rule
        with caplog.at_level(logging.INFO):
            announce_model("best", runs)
        lines = [r.getMessage() for r in caplog.records]
        assert lines[0] == f"Model: {choice.path}"
        assert lines[1] == f"  chosen by {choice.rule}"
        assert "validation accuracy" in lines[2] and "run finished" in lines[2]
    finally:
        shutil.rmtree(killed)


def test_runs_from_before_the_status_file_still_count_as_finished(finished_run: Path) -> None:
    old = _newer_copy(finished_run, "old", None)
    try:
        assert fit_status(old / "checkpoints") is None
        last, skipped = newest_finished_last_checkpoint(finished_run.parent)
        assert (last, skipped) == (old / "checkpoints" / "last.ckpt", 0)
    finally:
        shutil.rmtree(old)


def test_best_with_no_finished_run_is_refused_in_one_line(finished_run: Path, tmp_path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(finished_run, runs / "only")
    write_fit_status(runs / "only" / "checkpoints", RUNNING)
    with pytest.raises(CheckpointError, match="no finished run .*pass ckpt_path=last") as error:
        choose_model_file("best", runs)
    assert "\n" not in str(error.value)


def test_files_without_a_training_record_say_unknown() -> None:
    for path in (LEGACY / "seed_cnn.ckpt", LEGACY / "character_recognition.torch"):
        record = read_provenance(path)
        assert record == Provenance()
        assert "unknown" in record.describe()


def test_a_hostile_record_reads_as_unknown_fields() -> None:
    record = Provenance.from_dict(
        {"run": "x" * 10_000, "val_acc": float("nan"), "epochs": True, "experiment": ["a"]}
    )
    assert record == Provenance()
    partial = Provenance.from_dict({"val_acc": 0.5, "epochs": "2", "run": "r\x1b[2J"})
    assert partial == Provenance(val_acc=0.5)
    assert "validation accuracy 50.00%" in partial.describe()
    assert "experiment unknown" in partial.describe()
