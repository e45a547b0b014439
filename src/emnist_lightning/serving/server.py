"""serve(cfg): load the model, then run LitServe with the page at / and POST /predict."""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from emnist_lightning.config_checks import validate_config
from emnist_lightning.errors import ConfigError
from emnist_lightning.inference.predictors import Predictor, load_predictor
from emnist_lightning.inference.which_model import announce_model

API_PATH = "/predict"
PAGE_DIR = Path(str(files("emnist_lightning.serving") / "page"))
# The page loads nothing from elsewhere; the browser refuses anything else it might try.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def check_config(cfg: DictConfig) -> None:
    """One-line errors for settings the server cannot start with (each key's type and range
    first, then what depends on several keys or on this machine)."""
    validate_config(cfg)
    if cfg.batch_timeout >= cfg.request_timeout:
        raise ConfigError(
            f"batch_timeout={cfg.batch_timeout} is invalid: use seconds from 0 to below "
            f"request_timeout ({cfg.request_timeout}), e.g. 0.005"
        )
    if cfg.accelerator in ("cuda", "gpu") and not torch.cuda.is_available():
        raise ConfigError(
            f"accelerator={cfg.accelerator} but this machine has no CUDA device: "
            "use accelerator=cpu (or auto)"
        )


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}): stop what uses it or pass "
                "port=<another>"
            ) from None


def local_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches the server."""
    return f"http://[::1]:{port}/" if host == "::" else f"http://127.0.0.1:{port}/"


def add_page(app: Any) -> None:
    """Replace LitServe's plain-text `/` with the drawing page and its static files."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) != "/"]

    async def page() -> FileResponse:
        return FileResponse(
            PAGE_DIR / "index.html", headers={"Content-Security-Policy": PAGE_POLICY}
        )

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=PAGE_DIR), name="static")


def describe_predict_route(app: Any) -> None:
    """Give /docs the request body LitServe's generic route leaves out."""
    from emnist_lightning.serving.ingress import openapi_request_body

    for route in app.router.routes:
        if getattr(route, "path", None) == API_PATH:
            route.summary = "Recognise the character in one image"
            route.description = (
                'One image as multipart field `image` or JSON `{"image": "<base64>"}`. Returns '
                "`prediction`, `probability`, `top` (the k best characters), `look_alikes` (the "
                "top candidates the model's writers drew alike, to ask the user about, or []), "
                "`input` (the 28x28 image the model saw, base64 PNG) and `batch_size` (requests "
                "predicted together)."
            )
            route.openapi_extra = openapi_request_body()


def page_info(
    model_path: Path, predictor: Predictor, top_k: int, corrections: bool
) -> dict[str, Any]:
    """What GET /info tells the page (under `model`): the model file, its classes, how many
    characters each answer ranks (so the page shows `top_k=3` or a digits model as it is), the
    pairs its writers draw alike and whether corrections are collected."""
    class_names = list(predictor.class_names)
    return {
        "model": str(model_path),
        "classes": class_names,
        "top_k": min(top_k, len(class_names)),
        "look_alikes": [list(pair) for pair in predictor.look_alikes],
        "corrections": corrections,
    }


def corrections_folder(cfg: DictConfig) -> Path | None:
    """The folder corrections go to (None: off), checked writable before the server starts."""
    if not cfg.corrections_dir:
        return None
    from emnist_lightning.hydra_callbacks import folder_problem

    folder = Path(str(cfg.corrections_dir)).expanduser().resolve()
    problem = folder_problem(folder)
    if problem is not None:
        raise ConfigError(
            f"corrections_dir={cfg.corrections_dir} is not a writable folder ({problem}): "
            "pass another folder, or corrections_dir=null to turn corrections off"
        )
    return folder


def exposure_middlewares(
    api: Any, api_key: str | None, metrics_folder: str | None
) -> tuple[list[tuple[type, dict[str, Any]]], list[Any]]:
    """The API-key gate and the request timer (middlewares, outermost last) and the Prometheus
    logger, for whichever of the two is on."""
    from emnist_lightning.serving.access import ApiKeyGate
    from emnist_lightning.serving.corrections import CORRECTION_PATH
    from emnist_lightning.serving.metrics import METRICS_PATH, PrometheusLogger, RequestTimer

    middlewares: list[tuple[type, dict[str, Any]]] = []
    if api_key:  # checked before an upload is read; LitServe's own check guards its routes
        paths = (API_PATH, CORRECTION_PATH, METRICS_PATH)
        middlewares.append((ApiKeyGate, {"key": api_key, "paths": paths}))
    if metrics_folder is None:
        return middlewares, []
    middlewares.append((RequestTimer, {"path": API_PATH, "log": api.log}))
    return middlewares, [PrometheusLogger(metrics_folder)]


def build_server(
    cfg: DictConfig,
    model_path: Path,
    predictor: Predictor,
    api_key: str | None = None,
    metrics_folder: str | None = None,
) -> Any:
    """The LitServer: batching inference workers behind the image ingress, the page at /;
    behind an API-key gate when `api_key` is set, with /metrics when `metrics_folder` is."""
    from emnist_lightning.serving.api import CharacterAPI, default_threads
    from emnist_lightning.serving.corrections import CorrectionSettings, add_correction_route
    from emnist_lightning.serving.ingress import ImageIngress, Limits
    from emnist_lightning.serving.lifecycle import Heartbeats, LifecycleServer

    api_servers = cfg.api_servers or cfg.workers
    threads = cfg.threads_per_worker or default_threads(cfg.workers, api_servers)
    with warnings.catch_warnings():
        # max_batch_size=1 turns batching off; CharacterAPI handles both (LitServe warns).
        warnings.filterwarnings("ignore", message="The LitServer has both batch and unbatch")
        api = CharacterAPI(
            model_path=model_path,
            top_k=int(cfg.top_k),
            threads=int(threads),
            max_batch_size=int(cfg.max_batch_size),
            batch_timeout=float(cfg.batch_timeout),
            parent_pid=os.getpid(),
        )
    limits = Limits(
        max_image_bytes=int(float(cfg.max_image_mb) * 1_000_000),
        max_pixels=int(float(cfg.max_megapixels) * 1_000_000),
    )
    exposure, loggers = exposure_middlewares(api, api_key, metrics_folder)
    folder = corrections_folder(cfg)
    server = LifecycleServer(
        api,
        accelerator=cfg.accelerator,
        workers_per_device=int(cfg.workers),
        timeout=float(cfg.request_timeout),
        model_metadata=page_info(model_path, predictor, int(cfg.top_k), folder is not None),
        middlewares=[(ImageIngress, {"path": API_PATH, "limits": limits}), *exposure],
        loggers=loggers,
    )
    api.heartbeats = Heartbeats(len(server._inference_workers_config_for_api(API_PATH)))
    add_page(server.app)
    describe_predict_route(server.app)
    settings = CorrectionSettings(
        folder=folder,
        max_bytes=int(float(cfg.corrections_max_mb) * 1_000_000),
        class_names=tuple(predictor.class_names),
        limits=limits,
    )
    add_correction_route(server.app, settings)
    return server


def announce_when_ready(url: str, model_path: Path, host: str, api_key: str | None = None) -> None:
    """Print the address once the workers answer (LitServe logs only its /docs address)."""
    # With an API key LitServe guards /health too.
    health = urllib.request.Request(url + "health", headers={"X-API-Key": api_key or ""})

    def poll() -> None:
        while True:
            try:
                with urllib.request.urlopen(health, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.2)
        print(f"Serving {model_path}", flush=True)
        print(f"Open {url} to draw a character (API: POST {url}predict, docs: {url}docs)")
        if host != "127.0.0.1":
            print(f"Listening on all interfaces ({host}): other machines use this one's address")
        print("Ctrl-C stops the server.", flush=True)

    threading.Thread(target=poll, name="announce-ready", daemon=True).start()


def announce_exposure(url: str, host: str, api_key: str | None, metrics: bool) -> None:
    """Say at start what protects the API and where the metrics are."""
    from emnist_lightning.serving.access import API_KEY_ENV, API_KEY_HEADER

    if api_key:
        print(
            f"The API (/predict, /correction, /info, /health, /metrics) needs the header {API_KEY_HEADER} "
            f"({API_KEY_ENV}); the page at / cannot send it"
        )
    elif host != "127.0.0.1":
        print(f"No API key: anyone who reaches this port can use the API (set {API_KEY_ENV})")
    if metrics:
        print(f"Prometheus metrics: {url}metrics")


def stop_on_signals(before_stop: Callable[[], None] | None = None) -> None:
    """SIGTERM (kill, systemd, docker stop) and Ctrl-C stop everything cleanly.

    LitServe shuts its processes down on KeyboardInterrupt in the main process. Its HTTP
    servers are forked from it and re-raise the signal once uvicorn has shut down: they exit.
    `before_stop` runs first, in the main process (the metrics logger's end).
    """
    main = os.getpid()

    def stop(signum: int, frame: Any) -> None:
        if os.getpid() != main:
            raise SystemExit(0)
        if before_stop is not None:
            before_stop()
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def serve(cfg: DictConfig) -> None:
    """Check settings, load the model (failing here, in one line), then serve until stopped."""
    check_config(cfg)
    try:
        import litserve  # noqa: F401
    except ImportError:
        raise ConfigError("serving needs LitServe: pip install -e '.[serve]'") from None
    model_path = announce_model(str(cfg.ckpt_path), cfg.train_runs_dir).resolve()
    predictor = load_predictor(model_path)
    check_port_free(cfg.host, int(cfg.port))
    from emnist_lightning.serving.access import configured_api_key
    from emnist_lightning.serving.connections import with_read_timeout
    from emnist_lightning.serving.lifecycle import forked_children_die_with_parent
    from emnist_lightning.serving.metrics import (
        remove_metrics_folder,
        require_prometheus_client,
        start_metrics_folder,
        stop_logger,
    )

    api_key = configured_api_key()
    if cfg.metrics:
        require_prometheus_client()
    main = os.getpid()
    metrics_folder = start_metrics_folder() if cfg.metrics else None
    try:
        server = build_server(cfg, model_path, predictor, api_key, metrics_folder)
        announce_when_ready(local_url(cfg.host, int(cfg.port)), model_path, cfg.host, api_key)
        announce_exposure(local_url(cfg.host, int(cfg.port)), cfg.host, api_key, cfg.metrics)
        stop_on_signals((lambda: stop_logger(server)) if metrics_folder else None)
        # Long-lived objects (PyTorch, the app) go to the permanent generation before LitServe
        # forks its HTTP and queue processes (Python's advice for pre-fork servers): collections
        # then leave their shared pages alone, and the exit skips a slow final collection.
        gc.freeze()
        forked_children_die_with_parent()
        try:
            server.run(
                host=cfg.host,
                port=int(cfg.port),
                num_api_servers=cfg.api_servers,
                log_level=cfg.log_level,
                generate_client_file=False,
                # Slow clients (uvicorn settings, passed on by LitServe).
                http=with_read_timeout(float(cfg.read_timeout)),
                timeout_keep_alive=float(cfg.keep_alive_timeout),
                limit_concurrency=int(cfg.max_connections),
            )
        except (OSError, EOFError):
            if server.failure is None:  # not a death the watcher saw: LitServe's own failure
                raise
    finally:
        if metrics_folder is not None and os.getpid() == main:
            remove_metrics_folder(metrics_folder)
    if server.failure is not None:
        print(f"error: {server.failure}: the server stopped; start it again", file=sys.stderr)
        raise SystemExit(1)
