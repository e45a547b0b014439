"""The server's processes live and die together, and no request waits for ever.

LitServe (0.2) runs the HTTP servers, the inference workers and a multiprocessing manager as
children of `serve.py`, but it watches only the workers, waits for a worker's answer without
a limit, and says a stalled worker is healthy. Here:

- every child dies with the process that started it (Linux `PR_SET_PDEATHSIG`, plus a
  parent-pid check for a parent that died first), so a `kill -9` of `serve.py` leaves no
  process holding the port;
- a dead inference worker is restarted (LitServe's `restart_workers`); a dead HTTP process
  or manager stops the whole server, which then exits non-zero with one line saying why;
- the HTTP side answers 504 when no worker answered within `request_timeout`;
- workers beat a heartbeat into shared memory and `/health` fails once one stops beating.
"""

import asyncio
import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from typing import Any

import litserve as ls
from fastapi import Depends, HTTPException
from litserve.callbacks.base import EventTypes
from litserve.server import RegularRequestHandler
from litserve.utils import LitAPIStatus, ResponseBufferItem, WorkerSetupStatus

# (no `from __future__ import annotations` here: FastAPI reads the endpoint's annotations)

PR_SET_PDEATHSIG = 1
HEARTBEAT_INTERVAL = 0.25
# A worker whose last beat is older than this does not answer: /health says 503.
HEARTBEAT_STALE_AFTER = 1.5
WATCH_INTERVAL = 0.5

_forking_parent = os.getpid()


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent ends; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def _remember_forking_parent() -> None:
    global _forking_parent
    _forking_parent = os.getpid()


def forked_children_die_with_parent() -> None:
    """Every process forked from now on (LitServe's HTTP servers and its manager) dies with
    the process that forked it."""
    os.register_at_fork(
        before=_remember_forking_parent,
        after_in_child=lambda: die_with_parent(_forking_parent),
    )


class Heartbeats:
    """When each inference worker last beat, in shared memory every server process sees.

    CLOCK_MONOTONIC is one clock for all processes of a machine. A beat comes from a thread
    of the worker, so a stopped (`kill -STOP`), dead or restarting worker stops beating.
    """

    def __init__(self, workers: int) -> None:
        self.slots = mp.get_context("spawn").RawArray("d", workers)

    def start_beating(self, slot: int) -> None:
        def beat() -> None:
            while True:
                self.slots[slot] = time.monotonic()
                time.sleep(HEARTBEAT_INTERVAL)

        threading.Thread(target=beat, name="heartbeat", daemon=True).start()

    def all_fresh(self) -> bool:
        oldest = min(self.slots[i] for i in range(len(self.slots)))
        return time.monotonic() - oldest < HEARTBEAT_STALE_AFTER


class TimedRequestHandler(RegularRequestHandler):
    """LitServe's request handling, but the HTTP side gives up after `request_timeout`
    (504) instead of waiting for ever for a worker that stalled."""

    async def handle_request(self, request, request_type):
        payload = await self._prepare_request(request, request_type)
        uid, _ = await self._submit_request(payload)
        item = ResponseBufferItem(asyncio.Event())
        buffer = self.server.response_buffer
        buffer[uid] = item  # no await since the submit: the answer cannot have come yet
        try:
            await asyncio.wait_for(item.event.wait(), self.lit_api.request_timeout)
        except asyncio.TimeoutError:
            raise HTTPException(
                504, f"no inference worker answered within {self.lit_api.request_timeout} s"
            ) from None
        finally:
            buffer.pop(uid, None)
        response, status = item.response
        if status == LitAPIStatus.ERROR:
            self._handle_error_response(response)
        self.server._callback_runner.trigger_event(
            EventTypes.ON_RESPONSE.value, litserver=self.server
        )
        return response


def _death(process: Any) -> str:
    code = process.exitcode
    how = f"killed by {signal.Signals(-code).name}" if code and code < 0 else f"exit status {code}"
    return f"{process.name} (pid {process.pid}) died ({how})"


class LifecycleServer(ls.LitServer):
    """A LitServer whose processes are watched: see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, restart_workers=True, **kwargs)
        self.failure: str | None = None
        self._stopping = False

    def _register_api_endpoints(self, lit_api, request_type, response_type) -> None:
        self._callback_runner.trigger_event(EventTypes.ON_SERVER_START.value, litserver=self)
        handler = TimedRequestHandler(lit_api, self)

        async def predict(request):
            return await handler.handle_request(request, request_type)

        predict.__annotations__ = {"request": request_type, "return": response_type}
        self.app.add_api_route(
            lit_api.api_path,
            predict,
            methods=["POST"],
            dependencies=[Depends(self.setup_auth(lit_api))],
        )

    def _start_worker_monitoring(self, manager, uvicorn_workers) -> None:
        super()._start_worker_monitoring(manager, uvicorn_workers)  # restarts dead workers
        watched = [*uvicorn_workers.values(), manager._process]
        pids = lambda processes: " ".join(str(p.pid) for p in processes)  # noqa: E731
        print(
            f"Processes: serve.py {os.getpid()}, HTTP {pids(uvicorn_workers.values())}, "
            f"inference workers {pids(self.inference_workers)}, manager {manager._process.pid}",
            flush=True,
        )

        def watch() -> None:
            while not self._stopping:
                dead = [p for p in watched if not p.is_alive()]
                if any(s == WorkerSetupStatus.ERROR for s in self._setup_states()):
                    self._stop("an inference worker could not load the model (see above)")
                    return
                if dead:
                    # Exit status 0: it was told to stop (Ctrl-C reaches the whole group).
                    self._stop(None if dead[0].exitcode == 0 else _death(dead[0]))
                    return
                time.sleep(WATCH_INTERVAL)

        threading.Thread(target=watch, name="watch-server-processes", daemon=True).start()

    def _setup_states(self) -> list[Any]:
        try:
            return list(self.workers_setup_status.values())
        except (OSError, EOFError):  # the manager is gone: the process check reports it
            return []

    def _stop(self, failure: str | None) -> None:
        if self._stopping:
            return
        self.failure = failure
        # The manager may be dead: run() is then failing on it already.
        with contextlib.suppress(OSError, EOFError):
            self._shutdown_event.set()

    def _perform_graceful_shutdown(self, *args: Any, **kwargs: Any) -> None:
        self._stopping = True
        super()._perform_graceful_shutdown(*args, **kwargs)
