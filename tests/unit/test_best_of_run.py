"""`ckpt_path=best` reads the best file's name from last.ckpt: data from a shared run folder,
so it only ever names a .ckpt file beside last.ckpt."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emnist_lightning.errors import CheckpointError
from emnist_lightning.inference.model_files import best_of_run


def _last_recording(folder: Path, best: str) -> Path:
    folder.mkdir(parents=True)
    last = folder / "last.ckpt"
    state = {"best_model_path": best, "dirpath": str(folder)}
    torch.save({"state_dict": {}, "callbacks": {"ModelCheckpoint": state}}, last)
    return last


def test_the_recorded_best_is_found_beside_last_even_after_the_folder_moved(tmp_path) -> None:
    last = _last_recording(tmp_path / "moved" / "checkpoints", "/old/place/epoch=1.ckpt")
    (last.parent / "epoch=1.ckpt").write_bytes(b"x")
    assert best_of_run(last) == last.parent / "epoch=1.ckpt"


@pytest.mark.parametrize("planted", ["outside", "link", "not_ckpt"])
def test_a_planted_best_path_outside_the_run_is_refused(tmp_path, planted: str) -> None:
    elsewhere = tmp_path / "elsewhere" / "model.ckpt"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x")
    folder = tmp_path / "run" / "checkpoints"
    if planted == "outside":
        last = _last_recording(folder, str(elsewhere))
    elif planted == "link":  # a link beside last.ckpt that leads out of the folder
        last = _last_recording(folder, "model.ckpt")
        (folder / "model.ckpt").symlink_to(elsewhere)
    else:
        last = _last_recording(folder, "notes.txt")
        (folder / "notes.txt").write_text("x")
    with pytest.raises(CheckpointError, match="no such .ckpt file is beside it"):
        best_of_run(last)
