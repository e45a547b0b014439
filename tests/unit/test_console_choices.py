"""Which progress display a run gets: the bar on a terminal, one line per epoch otherwise."""

from __future__ import annotations

import io
import sys

import pytest
from helpers.configs import compose_config
from lightning.pytorch.callbacks import ProgressBar

from emnist_lightning.training.callbacks import EpochLine
from emnist_lightning.training.run import build_callbacks


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stdout", "overrides", "expected"),
    [
        (_Terminal(), [], ProgressBar),
        (io.StringIO(), [], EpochLine),  # a file or pipe: no bar, a line per epoch
        (_Terminal(), ["trainer.enable_progress_bar=false"], None),
        (io.StringIO(), ["trainer.enable_progress_bar=false"], None),
    ],
    ids=["terminal", "file", "off-on-terminal", "off-in-file"],
)
def test_the_bar_only_where_it_can_redraw(tmp_path, monkeypatch, stdout, overrides, expected):
    cfg = compose_config("train", ["callbacks.lr_monitor=null", *overrides], tmp_path)
    monkeypatch.setattr(sys, "stdout", stdout)
    callbacks = build_callbacks(cfg, None, has_logger=True)
    shown = [cb for cb in callbacks if isinstance(cb, (ProgressBar, EpochLine))]
    assert len(shown) == (0 if expected is None else 1)
    assert expected is None or isinstance(shown[0], expected)
