"""Experiment tracking as its users read it: MLflow (offline) and TensorBoard's HParams tab.

Lightning's loggers record what happens during fitting; a run's outcome (its final metrics,
its model files, config and report) is only known after the test pass, so `finish_tracking`
hands that to each tracker in the form its own tools show: MLflow artifacts, and one
TensorBoard hparams record that holds both the hyperparameters and the final metrics.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger

from emnist_lightning.errors import ConfigError
from emnist_lightning.json_input import JSONInputError, parse_json

SQLITE_PREFIX = "sqlite:///"
# Beside a run's files: which local MLflow run holds them, so export.py can add its exports.
MLFLOW_RUN_FILE = "mlflow_run.json"
# MLflow creates experiment 0, "Default", in every new store; our runs never use it.
DEFAULT_EXPERIMENT_ID = "0"


class EpochMLFlowLogger(MLFlowLogger):
    """MLFlowLogger whose metric steps are epochs, so MLflow's charts read per epoch.

    Lightning adds `epoch` to every metric dict it logs itself; a callback that logs with a
    step of its own (the learning-rate monitor) gets the trainer's current epoch instead,
    read through `epoch_of`, which `build_run` connects once the Trainer exists.
    """

    epoch_of: Callable[[], int] | None = None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        epoch = metrics.get("epoch")
        if epoch is None and self.epoch_of is not None:
            epoch = self.epoch_of()
        super().log_metrics(metrics, step=int(epoch) if epoch is not None else step)

    def log_files(self, root: Path, files: Iterable[Path]) -> None:
        """Copy `files` (below `root`) into the run's artifacts, keeping their sub-folders."""
        for path in files:
            folder = path.parent.relative_to(root).as_posix()
            self.experiment.log_artifact(
                self.run_id, str(path), artifact_path=None if folder == "." else folder
            )


def run_name(run_dir: str | Path) -> str:
    """The run folder's name; a sweep's numbered job folder is named with its sweep's."""
    folder = Path(run_dir)
    return f"{folder.parent.name}/{folder.name}" if folder.name.isdigit() else folder.name


def _prepare_store(tracking_uri: str, artifact_location: str | None) -> None:
    """Create a local SQLite store with its Default experiment under our artifact folder, and
    mark that experiment deleted: MLflow would otherwise point it at ./mlruns/0 of whatever
    folder a run starts from, and list an empty "Default" beside ours."""
    if not tracking_uri.startswith(SQLITE_PREFIX) or not artifact_location:
        return
    from mlflow.entities import LifecycleStage, ViewType
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    Path(tracking_uri.removeprefix(SQLITE_PREFIX)).parent.mkdir(parents=True, exist_ok=True)
    store = SqlAlchemyStore(tracking_uri, artifact_location)
    default = store.get_experiment(DEFAULT_EXPERIMENT_ID)
    if default.lifecycle_stage == LifecycleStage.ACTIVE and not store.search_runs(
        [DEFAULT_EXPERIMENT_ID], None, run_view_type=ViewType.ALL, max_results=1
    ):
        store.delete_experiment(DEFAULT_EXPERIMENT_ID)


def mlflow_logger(
    tracking_uri: str,
    artifact_location: str | None = None,
    run_dir: str | None = None,
    **kwargs: Any,
) -> Logger:
    """An epoch-stepped MLFlowLogger on a local store, named after the run folder, with
    MLflow's usage telemetry off.

    MLflow 3 starts a telemetry client on import that sends usage data to mlflow.org unless
    MLFLOW_DISABLE_TELEMETRY is set; a training run should not talk to the network, so it is
    set here, before anything imports mlflow. The artifact folder is made absolute so every
    run finds the same one.
    """
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if artifact_location and "://" not in artifact_location:
        artifact_location = Path(artifact_location).resolve().as_uri()
    if run_dir is not None:
        kwargs.setdefault("run_name", run_name(run_dir))
    try:
        if rank_zero_only.rank == 0:  # DDP's other processes never write to the store
            _prepare_store(tracking_uri, artifact_location)
        return EpochMLFlowLogger(
            tracking_uri=tracking_uri, artifact_location=artifact_location, **kwargs
        )
    except ModuleNotFoundError:
        raise ConfigError(
            "logger=mlflow needs MLflow: pip install -e '.[mlflow]' (or pip install mlflow-skinny)"
        ) from None


# -- TensorBoard's HParams tab ---------------------------------------------------------------
def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Short names for what runs are compared by, first in the HParams tab: (name, nested key).
COMPARED = (
    ("lr", "lr"),
    ("net", "net/name"),
    ("optimizer", "optimizer/_target_"),
    ("dropout", "net/dropout"),
    ("fc1_neurons", "net/fc1_neurons"),
    ("batch_size", "data/batch_size"),
)


def comparable_hparams(params: Mapping[str, Any]) -> dict[str, Any]:
    """One flat record: the tuned hyperparameters under short names, then everything else
    (lists and None as text, which is all TensorBoard's hparams accept beside numbers)."""
    flat = _flatten(params)
    record: dict[str, Any] = {}
    for name, key in COMPARED:
        if key in flat:
            value = flat.pop(key)
            record[name] = value.rpartition(".")[2] if name == "optimizer" else value
    record.update(flat)
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in record.items()}


def finish_tracking(
    loggers: Iterable[Logger],
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    step: int,
    root: Path,
    files: Iterable[Path],
) -> None:
    """Give each tracker the run's outcome: TensorBoard one hparams record (hyperparameters
    and final metrics together, what its HParams tab compares), MLflow the run's files."""
    files = list(files)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(comparable_hparams(params), dict(metrics), step=step)
            logger.finalize("success")
        elif isinstance(logger, EpochMLFlowLogger):
            logger.log_files(root, files)
            uri = logger._tracking_uri
            if uri.startswith(SQLITE_PREFIX):  # absolute: export.py may run from elsewhere
                uri = SQLITE_PREFIX + str(Path(uri.removeprefix(SQLITE_PREFIX)).resolve())
            record = {"tracking_uri": uri, "run_id": logger.run_id}
            (root / MLFLOW_RUN_FILE).write_text(json.dumps(record, indent=2))


def _is_mlflow_store(database: Path) -> bool:
    """A SQLite file that already holds MLflow's tables: MLflow would create or migrate
    tables in any other file it is pointed at."""
    try:
        with database.open("rb") as file:
            if file.read(16) != b"SQLite format 3\x00":
                return False
        uri = f"file:{database.resolve()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    except (OSError, sqlite3.Error):
        return False
    return {"runs", "experiments", "alembic_version"} <= tables


def mlflow_run_of(model_path: Path) -> tuple[str, str] | None:
    """The local MLflow run (tracking URI, run id) of the run folder a model file lies in.

    The record is data: only an existing local SQLite MLflow store and a hexadecimal run id
    are accepted (where that run keeps its files is checked before uploading, in
    log_exports), so a file cannot make an export talk to a server.
    """
    for folder in (model_path.parent, model_path.parent.parent):
        record_path = folder / MLFLOW_RUN_FILE
        if not record_path.is_file():
            continue
        try:
            record = parse_json(record_path.read_bytes(), max_bytes=10_000)
        except (OSError, JSONInputError):
            return None
        if not isinstance(record, dict):
            return None
        uri, run_id = record.get("tracking_uri"), record.get("run_id")
        if (
            isinstance(uri, str)
            and uri.startswith(SQLITE_PREFIX)
            and isinstance(run_id, str)
            and re.fullmatch(r"[0-9a-f]{32}", run_id)
            and _is_mlflow_store(Path(uri.removeprefix(SQLITE_PREFIX)))
        ):
            return uri, run_id
        return None
    return None


def _local_folder(artifact_uri: str, store: Path) -> bool:
    """Whether a run's artifact location is a local folder beside its SQLite store (what
    logger=mlflow writes), not a server, bucket or another part of the disk."""
    if artifact_uri.startswith("file://"):
        artifact_uri = artifact_uri.removeprefix("file://")
    elif "://" in artifact_uri or ":" in artifact_uri.split("/", 1)[0]:
        return False
    folder = Path(os.path.realpath(artifact_uri))
    return folder.is_relative_to(os.path.realpath(store.parent))


def log_exports(model_path: Path, files: Iterable[Path]) -> str | None:
    """Add exported files to the MLflow run of the model's training run, under `export/`;
    returns the run id, or None when the model has no MLflow run (or MLflow is not here)."""
    found = mlflow_run_of(model_path)
    if found is None:
        return None
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        return None
    uri, run_id = found
    client = MlflowClient(tracking_uri=uri)
    try:
        artifact_uri = client.get_run(run_id).info.artifact_uri or ""
    except Exception:  # MLflow's own errors (no such run, a damaged store) are many types
        return None
    if not _local_folder(artifact_uri, Path(uri.removeprefix(SQLITE_PREFIX))):
        return None
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path="export")
    return run_id
