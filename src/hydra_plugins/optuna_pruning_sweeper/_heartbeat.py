"""Heartbeats for the trials a sweeper has asked and not yet told.

The sweeper beats, not the training job: the sweeper is the process that will tell the trial's
result, so its death (kill -9, a lost machine, a container stopped) is exactly what would leave
the trial RUNNING for ever. Beating from ask to tell also covers the time a job waits in a
launcher's queue (SLURM) before it starts training.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from optuna.storages import BaseStorage

log = logging.getLogger(__name__)


class Heartbeat:
    """A daemon thread that records a beat for each open trial every `interval` seconds."""

    def __init__(self, storage: BaseStorage) -> None:
        self.storage = storage
        # Heartbeat-capable storages (RDB, HeartbeatJournalStorage) say their interval.
        get_interval = getattr(storage, "get_heartbeat_interval", None)
        self.interval: int | None = get_interval() if get_interval else None
        self.enabled = self.interval is not None
        self._trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self, trial_id: int) -> None:
        try:
            self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        except Exception as exc:  # the trial was told meanwhile, or the database blinked
            log.debug("heartbeat for trial id %d skipped: %s", trial_id, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                trial_ids = list(self._trial_ids)
            for trial_id in trial_ids:
                self._beat(trial_id)

    def add(self, trial_id: int) -> None:
        """Beat for this trial from now on (the first beat is recorded at once)."""
        if not self.enabled:
            return
        self._beat(trial_id)
        with self._lock:
            self._trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        """Stop beating for this trial: call it just before telling the trial's result."""
        with self._lock:
            self._trial_ids.discard(trial_id)

    def __enter__(self) -> Heartbeat:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
