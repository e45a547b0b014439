"""Where a trained model came from: its run, experiment, when it was saved and its validation
accuracy, so every command that loads one can say which model is answering.

Written at training time as plain data beside the model card (a checkpoint's `provenance`
key, an ONNX file's metadata). It only describes the model, nothing is built from it, so
reading is lenient: a field that is missing or not of its plain type reads as unknown (files
written before the record existed read as all unknown).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any

# Where a checkpoint (and an ONNX file's metadata) keeps the record.
PROVENANCE_KEY = "provenance"
# What `experiment` holds for a run that chose none (the default recipe).
NO_EXPERIMENT = "none"
_MAX_TEXT = 200


@dataclass(frozen=True)
class Provenance:
    """What a model file says of its training; None means unknown."""

    run: str | None = None
    experiment: str | None = None
    saved_at: str | None = None  # ISO 8601, UTC
    epochs: int | None = None  # epochs completed when the file was saved
    max_epochs: int | None = None
    val_acc: float | None = None  # validation accuracy of the weights in this file

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: Any) -> Provenance:
        """Each field of `data` that has its plain type; anything else reads as unknown."""
        if not isinstance(data, dict):
            return cls()
        kept: dict[str, Any] = {}
        for field in fields(cls):
            value = data.get(field.name)
            if field.name in ("epochs", "max_epochs"):
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            elif field.name == "val_acc":
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                ok = ok and math.isfinite(value) and 0 <= value <= 1
            else:
                ok = isinstance(value, str) and 0 < len(value) <= _MAX_TEXT and value.isprintable()
            if ok:
                kept[field.name] = value
        return cls(**kept)

    def describe(self) -> str:
        """One line for a console: `unknown` for each fact the file does not hold."""
        if self == Provenance():
            return "training record: unknown (the file has none; it predates them or was not written by train.py)"
        experiment = {None: "unknown", NO_EXPERIMENT: "none (default recipe)"}.get(
            self.experiment, self.experiment
        )
        if self.epochs is None:
            epochs = "unknown"
        else:
            epochs = f"{self.epochs}" + (f"/{self.max_epochs}" if self.max_epochs else "")
        val = "unknown" if self.val_acc is None else f"{self.val_acc:.2%}"
        return (
            f"experiment {experiment}, run {self.run or 'unknown'}, saved "
            f"{_readable_time(self.saved_at)} after epoch {epochs}, validation accuracy {val}"
        )


def _readable_time(iso: str | None) -> str:
    if iso is None:
        return "at an unknown time"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return "at an unknown time"
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def now_utc() -> str:
    """The current time as the record stores it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
