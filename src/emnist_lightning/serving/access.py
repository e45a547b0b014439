"""An optional API key for POST /predict and GET /metrics: LitServe's own, checked first.

LitServe requires `X-API-Key` on its routes when `LIT_SERVER_API_KEY` is set in the
environment (read once, when litserve is imported). Its check is a route dependency, so it
runs after the middlewares, and the image ingress reads and preprocesses an upload before
that: an unauthenticated client could still make the server decode images. This middleware
applies the same key, with LitServe's answer, before anything reads the body.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from emnist_lightning.serving.ingress import _drain

API_KEY_ENV = "LIT_SERVER_API_KEY"
API_KEY_HEADER = "X-API-Key"
# A refused request's body is read and dropped up to this size; beyond it the connection closes.
DRAIN_BYTES = 64 * 1024 * 1024
DENIED = f"Invalid API Key. Check that you are passing a correct '{API_KEY_HEADER}' in your header."


def configured_api_key() -> str | None:
    """The key LitServe enforces (its own module constant, from LIT_SERVER_API_KEY), or None."""
    from litserve import server

    return server.LIT_SERVER_API_KEY or None


class ApiKeyGate:
    """ASGI middleware: requests to `paths` (and below them) need `X-API-Key: <key>`."""

    def __init__(self, app: ASGIApp, key: str, paths: tuple[str, ...]) -> None:
        self.app = app
        self.key = key.encode()
        self.paths = paths

    def guarded(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.guarded(scope["path"]):
            # Header bytes as sent (Starlette decodes them as latin-1); the key as UTF-8.
            given = Headers(scope=scope).get(API_KEY_HEADER, "").encode("latin-1")
            if not hmac.compare_digest(given, self.key):
                # Read (up to a bound) and drop what the client sends, so it gets to read the
                # answer instead of a broken connection; nothing of it is decoded.
                await _drain(receive, DRAIN_BYTES)
                await JSONResponse({"detail": DENIED}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)
