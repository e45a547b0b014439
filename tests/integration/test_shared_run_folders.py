"""A run folder from elsewhere is data: resuming it touches no file outside the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from emnist_lightning.inference.model_files import read_checkpoint
from emnist_lightning.training.checkpoint_io import checkpoint_folder_lock
from emnist_lightning.training.run import train

# Every epoch is a new best, so each resumed epoch replaces (deletes) the previous best file.
EVERY_EPOCH_BEST = "callbacks.model_checkpoint.monitor=epoch"


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    (victim / "inner").mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    (victim / "inner" / "precious.ckpt").write_text("keep me too")
    return victim


def _victim_intact(victim: Path) -> bool:
    return (victim / "precious.txt").read_text() == "keep me" and (
        victim / "inner" / "precious.ckpt"
    ).read_text() == "keep me too"


def _checkpoint_state(checkpoint: dict) -> dict:
    (key,) = [k for k in checkpoint["callbacks"] if k.startswith("ModelCheckpoint")]
    return checkpoint["callbacks"][key]


@pytest.mark.parametrize("form", ["url", "dotdot"])
def test_a_crafted_checkpoint_state_cannot_delete_files_outside_the_run(
    form: str, make_train_cfg, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    train(make_train_cfg("trainer.max_epochs=1", "test=false", EVERY_EPOCH_BEST, output_dir=first))
    folder = first / "checkpoints"
    victim = _victim(tmp_path)
    named = f"local://{victim}" if form == "url" else f"{folder}/../../victim"
    last = folder / "last.ckpt"
    checkpoint = read_checkpoint(last)
    state = _checkpoint_state(checkpoint)
    del state["dirpath"]  # Lightning then reloads best_k_models as they are
    state["best_k_models"] = {named: torch.tensor(-1.0), f"{named}/inner": torch.tensor(-2.0)}
    state["kth_best_model_path"] = named
    state["best_model_path"] = f"{named}/inner"
    state["last_model_path"] = named
    torch.save(checkpoint, last)

    metrics = train(
        make_train_cfg(f"ckpt_path={last}", "trainer.max_epochs=3", "test=false", EVERY_EPOCH_BEST)
    )

    assert metrics["epochs"] == 3
    assert _victim_intact(victim)
    # The run carried on with its own files: last.ckpt and the newest best, nothing else.
    best, newest = sorted(p.name for p in folder.glob("*.ckpt"))
    assert best.startswith("epoch_002-") and newest == "last.ckpt"
    assert _checkpoint_state(read_checkpoint(last))["best_model_path"].endswith(best)


def test_a_lock_file_that_links_elsewhere_is_replaced_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (folder / ".lock").symlink_to(target)
    with checkpoint_folder_lock(folder):
        assert not (folder / ".lock").is_symlink()
        assert (folder / ".lock").read_text() == f"pid {os.getpid()}"
    assert target.read_text() == "keep me"

    os.unlink(folder / ".lock")
    os.link(target, folder / ".lock")  # a hard link (tar keeps them) is replaced too
    with checkpoint_folder_lock(folder):
        pass
    assert target.read_text() == "keep me"


def test_resuming_a_shipped_run_whose_lock_links_elsewhere_leaves_the_target(
    make_train_cfg, tmp_path: Path
) -> None:
    first = tmp_path / "first"
    train(make_train_cfg("trainer.max_epochs=1", "test=false", output_dir=first))
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    lock = first / "checkpoints" / ".lock"
    lock.unlink()
    lock.symlink_to(target)
    last = first / "checkpoints" / "last.ckpt"
    train(make_train_cfg(f"ckpt_path={last}", "trainer.max_epochs=2", "test=false"))
    assert target.read_text() == "keep me"
    assert read_checkpoint(last)["epoch"] == 1
