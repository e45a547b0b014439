"""Where a study lives: one string (a journal file or an RDB URL) -> an Optuna storage.

Every storage we open can record heartbeats, so workers on any machine can fail each other's
dead trials with `optuna.storages.fail_stale_trials`: RDB storages have them built in; journal
files get them here, as a trial system attribute.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from pathlib import Path

from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ._errors import SweepConfigError, message_line

log = logging.getLogger(__name__)

DEFAULT_STORAGE_NAME = "optuna.journal"
# The study name when hydra.sweeper.study_name is null: the sweeper and its jobs must agree
# on one name to find the study (Optuna would draw a random one).
DEFAULT_STUDY_NAME = "optuna"
HEARTBEAT_ATTR = "heartbeat"
# Two workers creating Optuna's tables in an empty database at once: one of them loses the race
# (IntegrityError / "already exists"); opening again then finds the tables.
_OPEN_ATTEMPTS = 6


def is_database_url(spec: str) -> bool:
    return "://" in spec


def storage_spec(storage: str | None, sweep_dir: str | Path, base_dir: str | Path) -> str:
    """The sweep's storage as one string: as configured, or a journal file in the sweep folder.

    Relative file paths (journal files, sqlite:///relative.db) are made absolute against
    `base_dir`, the folder the sweep was started from, so a job that runs in its own folder
    (hydra.job.chdir=true) opens the same study as the sweeper.
    """
    if storage is None:
        path = Path(sweep_dir) / DEFAULT_STORAGE_NAME
    elif storage.startswith("sqlite:///"):
        rest = storage.removeprefix("sqlite:///")
        if rest and not rest.startswith(("/", ":memory:")):
            return f"sqlite:///{Path(base_dir) / rest}"
        return storage
    elif is_database_url(storage):
        return storage
    else:
        path = Path(storage)
    return str(path if path.is_absolute() else Path(base_dir) / path)


def display_spec(spec: str) -> str:
    """The storage string with any database password hidden, for logs and result files."""
    if not is_database_url(spec):
        return spec
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(spec).render_as_string(hide_password=True)
    except ArgumentError:
        return spec


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage plus the heartbeat Optuna only gives RDB storages.

    A beat is the time in a trial system attribute; a RUNNING trial is stale when neither a
    beat nor its start is younger than the grace period. Workers sharing the journal file (one
    machine, or a shared file system with roughly synchronised clocks) can then fail a dead
    worker's trial, whatever its host or process id.
    """

    def __init__(
        self,
        backend: JournalFileBackend,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
    ) -> None:
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        assert self.heartbeat_interval is not None
        grace = self.grace_period or 2 * self.heartbeat_interval
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            # A retried trial copies its origin's attributes; its own start is a fresher beat.
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            last = max(float(trial.system_attrs.get(HEARTBEAT_ATTR, 0.0)), started)
            if now - last > grace:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> None:
        return None


def _is_creation_race(exc: Exception) -> bool:
    from sqlalchemy.exc import IntegrityError

    text = str(exc).lower()
    return isinstance(exc, IntegrityError) or "already exists" in text or "locked" in text


def _open_database(
    spec: str, heartbeat_interval: int | None, grace_period: int | None
) -> RDBStorage:
    from sqlalchemy.exc import SQLAlchemyError

    shown = display_spec(spec)
    for attempt in range(1, _OPEN_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(
                    spec, heartbeat_interval=heartbeat_interval, grace_period=grace_period
                )
        except ImportError as exc:  # Optuna re-raises the driver's ModuleNotFoundError
            missing = getattr(exc.__cause__, "name", None) or getattr(exc, "name", None)
            hint = (
                "pip install 'psycopg[binary]' (psycopg 3, SQLAlchemy >= 2.1)"
                if spec.startswith("postgresql")
                else "install the Python driver SQLAlchemy uses for this URL"
            )
            raise SweepConfigError(
                f"storage {shown} needs the database driver '{missing}', which is not "
                f"installed: {hint}"
            ) from None
        except SQLAlchemyError as exc:
            if attempt < _OPEN_ATTEMPTS and _is_creation_race(exc):
                log.info("Storage tables are being created by another worker; retrying")
                time.sleep(random.uniform(0.1, 0.5) * attempt)
                continue
            reason = message_line(getattr(exc, "orig", None) or exc)
            raise SweepConfigError(
                f"cannot open storage {shown}: {reason} (check hydra.sweeper.storage and "
                "that the database server is running)"
            ) from None
    raise AssertionError("unreachable")


def open_storage(
    spec: str, heartbeat_interval: int | None = None, grace_period: int | None = None
) -> BaseStorage:
    """`spec` is a journal file path (several processes may share it) or an RDB URL such as
    sqlite:///study.db or postgresql://user:password@host/db (several machines may share it).

    With `heartbeat_interval` (seconds), trials can record heartbeats and a RUNNING trial
    whose last beat is older than `grace_period` (default: two intervals) counts as stale.
    """
    if is_database_url(spec):
        return _open_database(spec, heartbeat_interval, grace_period)
    path = Path(spec)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path))
    except OSError as exc:
        raise SweepConfigError(
            f"cannot create the study file {path}: {exc.strerror or exc}"
        ) from None
    return HeartbeatJournalStorage(backend, heartbeat_interval, grace_period)
