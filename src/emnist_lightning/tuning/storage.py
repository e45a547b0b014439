"""Opening an Optuna storage from one string, and a lock that makes ask-if-budget-left atomic."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

JOURNAL_SUFFIXES = (".journal", ".log", ".jsonl")


def is_database_url(spec: str) -> bool:
    return "://" in spec


def local_storage_file(spec: str) -> Path | None:
    """The file behind a journal path or a sqlite URL; None for a database server."""
    if spec.startswith("sqlite:///"):
        return Path(spec.removeprefix("sqlite:///"))
    return None if is_database_url(spec) else Path(spec)


def open_storage(spec: str, heartbeat_interval: int | None = None) -> BaseStorage:
    """`spec` is a journal file path (several processes may share it) or an RDB URL such as
    sqlite:///study.db or postgresql://user@host/db (several machines may share it)."""
    if is_database_url(spec):
        kwargs = {"heartbeat_interval": heartbeat_interval} if heartbeat_interval else {}
        return RDBStorage(spec, **kwargs)
    path = Path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


@contextlib.contextmanager
def study_lock(spec: str) -> Iterator[None]:
    """Hold an exclusive lock beside a local storage file (no-op for database servers).

    Workers count the study's trials and ask for a new one under this lock, so two workers
    on one machine can never both take the last trial of the budget.
    """
    path = local_storage_file(spec)
    if path is None:
        yield
        return
    # Not "<file>.lock": Optuna's journal backend uses that name for its own lock.
    lock_path = path.with_name(path.name + ".ask-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
