"""Experiment tracking that stays on this machine: Lightning's MLFlowLogger, offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger

from emnist_lightning.errors import ConfigError

SQLITE_PREFIX = "sqlite:///"


def mlflow_logger(tracking_uri: str, artifact_location: str | None = None, **kwargs: Any) -> Logger:
    """Lightning's MLFlowLogger with MLflow's usage telemetry off.

    MLflow 3 starts a telemetry client on import that sends usage data to mlflow.org unless
    MLFLOW_DISABLE_TELEMETRY is set; a training run should not talk to the network, so it is
    set here, before Lightning imports mlflow. A local SQLite store gets its folder created, and
    the artifact folder is made absolute so every run finds the same one.
    """
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if tracking_uri.startswith(SQLITE_PREFIX):
        Path(tracking_uri.removeprefix(SQLITE_PREFIX)).parent.mkdir(parents=True, exist_ok=True)
    if artifact_location and "://" not in artifact_location:
        artifact_location = Path(artifact_location).resolve().as_uri()
    from lightning.pytorch.loggers import MLFlowLogger

    try:
        return MLFlowLogger(
            tracking_uri=tracking_uri, artifact_location=artifact_location, **kwargs
        )
    except ModuleNotFoundError:
        raise ConfigError(
            "logger=mlflow needs MLflow: pip install -e '.[mlflow]' (or pip install mlflow-skinny)"
        ) from None
