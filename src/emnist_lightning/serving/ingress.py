"""The HTTP side of POST /predict: read one image, check it, preprocess it as predict.py does.

This runs in the HTTP server processes, before LitServe queues a request for the batching
inference workers, for three reasons: a bad request gets its own 4xx answer (LitServe answers
a whole batch with the error when one of its requests raises), an uploaded file never has to
cross to a worker (its open file cannot be pickled), and only the 28x28 input crosses.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import anyio
import torch
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emnist_lightning.errors import UserError
from emnist_lightning.inference.preprocess import load_character, load_views
from emnist_lightning.json_input import JSONInputError, parse_json
from emnist_lightning.serving.api import pack_input

FIELD = "image"
HOW_TO_SEND = (
    "send one image as multipart field 'image' (curl -F image=@a.png) "
    'or as JSON {"image": "<base64 PNG/JPEG>"}'
)
# Room for base64 (4/3) and multipart framing on top of the image size limit.
BODY_OVERHEAD = 64 * 1024
# A refused body is read and dropped up to this many times the limit before answering 413;
# beyond that the connection is closed on the client, which may then miss the answer.
DRAIN_FACTOR = 8


class RequestError(Exception):
    """A request this server answers with `status` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int
    max_pixels: int

    @property
    def max_body_bytes(self) -> int:
        return self.max_image_bytes * 4 // 3 + BODY_OVERHEAD


def _megabytes(n: int) -> str:
    return f"{n / 1_000_000:.3g} MB"


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of a refused body, so the client gets to read our answer."""
    while budget > 0:
        message = await receive()
        budget -= len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def read_body(scope: Scope, receive: Receive, limits: Limits) -> bytes:
    """The whole body, refused with 413 as soon as it is known to be too large."""
    headers = Headers(scope=scope)
    too_large = RequestError(
        413,
        f"the request is larger than {_megabytes(limits.max_body_bytes)}: "
        f"send an image under {_megabytes(limits.max_image_bytes)} (server setting max_image_mb)",
    )
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        # A client waiting for "100 Continue" (curl, for large bodies) has sent nothing yet.
        if headers.get("expect", "").lower() != "100-continue":
            await _drain(receive, DRAIN_FACTOR * limits.max_body_bytes)
        raise too_large
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError(400, "the client disconnected before sending the whole request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limits.max_body_bytes:
            if message.get("more_body", False):
                await _drain(receive, DRAIN_FACTOR * limits.max_body_bytes)
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def image_from_json(body: bytes) -> bytes:
    try:
        payload = parse_json(body, len(body))  # the body's size is capped as it is read
    except JSONInputError as exc:
        raise RequestError(400, f"the body is {exc}: {HOW_TO_SEND}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get(FIELD), str):
        raise RequestError(400, f'the JSON has no "image" string: {HOW_TO_SEND}')
    text = payload[FIELD]
    if text.startswith("data:") and "," in text:  # a data URL, e.g. from canvas.toDataURL()
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, '"image" is not valid base64: encode the file\'s bytes') from None


async def read_form(scope: Scope, body: bytes, how_to_send: str = HOW_TO_SEND) -> FormData:
    """A multipart body already read (and size-checked) as a form; the caller closes it."""

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(scope, replay).form(max_files=1, max_fields=10)
    except (MultiPartException, HTTPException) as exc:
        # Starlette raises HTTPException instead inside an app (a real server), whose
        # error middleware would answer 500 with a traceback in the log.
        reason = exc.message if isinstance(exc, MultiPartException) else exc.detail
        raise RequestError(400, f"unreadable multipart body ({reason}): {how_to_send}") from None


async def form_image(form: FormData, how_to_send: str = HOW_TO_SEND) -> bytes:
    upload = form.get(FIELD)
    if not isinstance(upload, UploadFile):
        raise RequestError(400, f"no file field 'image' in the form: {how_to_send}")
    return await upload.read()


async def image_from_multipart(scope: Scope, body: bytes) -> bytes:
    form = await read_form(scope, body)
    try:
        return await form_image(form)
    finally:
        await form.close()


async def read_image(scope: Scope, receive: Receive, limits: Limits) -> bytes:
    """The image file's bytes from a multipart or JSON request, or a RequestError."""
    content_type = Headers(scope=scope).get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    body = await read_body(scope, receive, limits)
    if not body:
        raise RequestError(400, f"the request body is empty: {HOW_TO_SEND}")
    if media_type == "application/json":
        image = image_from_json(body)
    elif media_type == "multipart/form-data":
        image = await image_from_multipart(scope, body)
    else:
        raise RequestError(
            415,
            f"Content-Type {content_type or '(none)'} is not accepted: {HOW_TO_SEND}",
        )
    if not image:
        raise RequestError(400, f"the image is empty (0 bytes): {HOW_TO_SEND}")
    if len(image) > limits.max_image_bytes:
        raise RequestError(
            413,
            f"the image is {_megabytes(len(image))}, over the {_megabytes(limits.max_image_bytes)} "
            "limit (server setting max_image_mb): send a smaller image",
        )
    return image


def check_pixels(image: bytes, limits: Limits) -> None:
    """Refuse images too large to decode safely; reads only the header."""
    try:
        with Image.open(io.BytesIO(image)) as opened:
            width, height = opened.size
    except Image.DecompressionBombError:
        width = height = limits.max_pixels + 1
    except (UnidentifiedImageError, OSError, ValueError):
        return  # load_character reports unreadable images in predict.py's words
    if width * height > limits.max_pixels:
        raise RequestError(
            413,
            f"the image is {width}x{height} pixels, over {limits.max_pixels / 1e6:g} megapixels "
            "(server setting max_megapixels): send a smaller image",
        )


def prepare(image: bytes, limits: Limits) -> torch.Tensor:
    """The (1, 28, 28) input shown for the uploaded bytes (corrections store it)."""
    return prepare_views(image, limits, load=load_character)


def prepare_views(
    image: bytes, limits: Limits, load: Callable[[BinaryIO], torch.Tensor] = load_views
) -> torch.Tensor:
    """predict.py's preprocessing, on the uploaded bytes: the (V, 1, 28, 28) views the model
    reads."""
    check_pixels(image, limits)
    try:
        return load(io.BytesIO(image))  # errors name it "image"
    except UserError as exc:
        raise RequestError(422, str(exc)) from None


class ImageIngress:
    """ASGI middleware: POST `path` bodies become the prepared input, or a 4xx JSON answer."""

    def __init__(self, app: ASGIApp, path: str, limits: Limits) -> None:
        self.app = app
        self.path = path
        self.limits = limits
        self._limiter: anyio.CapacityLimiter | None = None

    def limiter(self) -> anyio.CapacityLimiter:
        # At most one image decoded per core at a time: big photos cost memory and CPU.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(os.cpu_count() or 1)
        return self._limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            image = await read_image(scope, receive, self.limits)
            prepared = await anyio.to_thread.run_sync(
                prepare_views, image, self.limits, limiter=self.limiter()
            )
        except RequestError as exc:
            await JSONResponse({"detail": exc.message}, status_code=exc.status)(
                scope, receive, send
            )
            return
        body = json.dumps(pack_input(prepared)).encode()
        await self.app(_json_scope(scope, len(body)), _replay(body, receive), send)


def _json_scope(scope: Scope, length: int) -> Scope:
    headers = [
        (name, value)
        for name, value in scope["headers"]
        if name not in (b"content-type", b"content-length")
    ]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    return {**scope, "headers": headers}


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # e.g. http.disconnect while the worker predicts
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def openapi_request_body() -> dict[str, Any]:
    """The /predict request as OpenAPI describes it (LitServe's route declares no body)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [FIELD],
                        "properties": {FIELD: {"type": "string", "format": "binary"}},
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": [FIELD],
                        "properties": {FIELD: {"type": "string", "description": "base64 PNG/JPEG"}},
                    }
                },
            },
        }
    }
