"""Prometheus metrics for serve.py (`metrics=true`), through LitServe's Logger API.

Observations come from two kinds of processes: the HTTP servers (each request's status and
latency, timed by `RequestTimer`) and the inference workers (each batch's size). Both send
them with `LitAPI.log` into LitServe's log queue, which one logger process drains into
`prometheus_client` metrics. `/metrics` is answered by whichever HTTP server process gets the
scrape, so the metrics live in prometheus_client's multiprocess mode: the logger process writes
them to files in a fresh folder (`PROMETHEUS_MULTIPROC_DIR`) and every `/metrics` reads the
same files. Any number of workers and HTTP processes add up to one set of counts.

prometheus_client is imported only inside functions: it is an optional dependency, and the
logger process must import it after PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import litserve as ls
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METRICS_PATH = "/metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Keys of LitAPI.log entries.
REQUEST = "emnist_request"  # (HTTP status, seconds)
BATCH = "emnist_batch"  # requests predicted in one forward pass
# Sent by the main process when the server stops: LitServe's logger loop has no end of its
# own and would die on the closed queue with a traceback.
STOP = "emnist_stop"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def require_prometheus_client() -> None:
    """One line saying what to install when metrics=true finds no prometheus_client."""
    from emnist_lightning.errors import ConfigError

    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError(
            "metrics=true needs prometheus_client: pip install -e '.[serve]'"
        ) from None


def start_metrics_folder() -> str:
    """A fresh folder for this server's metric files, named in the environment the server's
    processes inherit (prometheus_client's multiprocess mode wants it empty at start)."""
    folder = tempfile.mkdtemp(prefix="emnist-serve-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    return folder


def remove_metrics_folder(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if os.environ.get(MULTIPROC_ENV) == folder:
        del os.environ[MULTIPROC_ENV]


def stop_logger(server: Any) -> None:
    """Let the logger process end before LitServe closes its log queue (main process).

    Called from a signal handler: the queue is reached from a thread of its own (with its own
    connection to LitServe's manager), never from the interrupted one, and waited for briefly.
    """
    if server.logger_queue is None:
        return

    def put() -> None:
        with contextlib.suppress(OSError, EOFError):  # a second Ctrl-C, after the shutdown
            server.logger_queue.put((STOP, None))

    sender = threading.Thread(target=put, name="stop-metrics-logger", daemon=True)
    sender.start()
    sender.join(timeout=2)


def metrics_app(folder: str) -> ASGIApp:
    """The /metrics endpoint: every process's metric files in `folder`, summed."""
    from prometheus_client import CollectorRegistry, make_asgi_app, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return make_asgi_app(registry)


class _Metrics:
    """The server's metrics, created in the logger process."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(
            "emnist_predict_requests", "POST /predict requests answered, by HTTP status", ["status"]
        )
        self.errors = Counter(
            "emnist_predict_errors",
            "POST /predict requests answered with an error (4xx or 5xx), by HTTP status",
            ["status"],
        )
        self.latency = Histogram(
            "emnist_predict_request_seconds",
            "Seconds from a POST /predict request's arrival to the end of its answer",
            buckets=LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "emnist_predict_batch_size",
            "Requests predicted together in one forward pass",
            buckets=BATCH_BUCKETS,
        )


class PrometheusLogger(ls.Logger):
    """LitServe logger that turns log entries into metrics; mounts /metrics when given the
    metrics folder (in the main process). LitServe pickles it into its logger process."""

    def __init__(self, folder: str | None = None) -> None:
        super().__init__()
        self._metrics: _Metrics | None = None
        if folder is not None:
            self.mount(METRICS_PATH, metrics_app(folder))

    def __getstate__(self) -> dict[str, Any]:
        # The logger process needs neither the mounted app nor metrics made elsewhere.
        return {"_config": {}, "_metrics": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled in the logger process: Ctrl-C reaches the whole process group, and the
        # main process stops this one (STOP) before it shuts LitServe's queues down.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.__dict__.update(state)

    def process(self, key: str, value: Any) -> None:
        if self._metrics is None:
            self._metrics = _Metrics()
        if key == REQUEST:
            status, seconds = value
            self._metrics.requests.labels(status=str(status)).inc()
            if int(status) >= 400:
                self._metrics.errors.labels(status=str(status)).inc()
            self._metrics.latency.observe(float(seconds))
        elif key == BATCH:
            self._metrics.batch_size.observe(int(value))
        elif key == STOP:
            raise SystemExit(0)  # not an Exception: ends LitServe's logger loop


class RequestTimer:
    """ASGI middleware (HTTP server processes): each request to `path`, its status and time."""

    def __init__(self, app: ASGIApp, path: str, log: Callable[[str, Any], None]) -> None:
        self.app = app
        self.path = path
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.log(REQUEST, (status, time.perf_counter() - start))
