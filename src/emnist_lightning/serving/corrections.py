"""POST /correction: a user's "that is wrong, it is X", stored as training data.

Off unless serve.py runs with `corrections_dir=<folder>` (then 404 says how to turn it on).
The page sends a correction only when the user clicks "Save correction"; the server preprocesses
the image as /predict does and stores the 28x28 input, the image and the strokes with the
character (data/corrections.py), for `train.py data.extra=[<folder>]`. It runs in the HTTP
processes, like the rest of the request handling, never in an inference worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse

from emnist_lightning.data.corrections import (
    MAX_RECORD_BYTES,
    MAX_STROKES_DEPTH,
    CorrectionError,
    CorrectionsFullError,
    check_strokes,
    write_correction,
)
from emnist_lightning.data.labels import class_of_character
from emnist_lightning.json_input import JSONInputError, parse_json
from emnist_lightning.serving.ingress import (
    Limits,
    RequestError,
    form_image,
    prepare,
    read_body,
    read_form,
)

CORRECTION_PATH = "/correction"
HOW_TO_SEND = (
    "send a multipart form with file field 'image' (what was sent to /predict), field "
    "'character' (the right one) and optionally 'strokes' (JSON: [[[x, y], ...], ...])"
)


@dataclass(frozen=True)
class CorrectionSettings:
    folder: Path | None  # None: corrections are off
    max_bytes: int
    class_names: tuple[str, ...]
    limits: Limits


def _text_field(form: Any, name: str, default: str | None = None) -> str:
    value = form.get(name, default)
    if not isinstance(value, str):
        raise RequestError(400, f"no text field '{name}' in the form: {HOW_TO_SEND}")
    return value


def _character(text: str, class_names: tuple[str, ...]) -> str:
    character = class_of_character(text.strip(), class_names)
    if character is None:
        raise RequestError(
            422,
            f"character {text[:20]!r} is not one the model knows: send one of "
            f"{''.join(class_names)}",
        )
    return character


def _strokes(text: str) -> list:
    try:
        return check_strokes(parse_json(text, MAX_RECORD_BYTES, MAX_STROKES_DEPTH))
    except JSONInputError as exc:
        raise RequestError(400, f"'strokes' is not usable JSON ({exc}): {HOW_TO_SEND}") from None
    except CorrectionError as exc:
        raise RequestError(422, str(exc)) from None


async def store_correction(request: Request, settings: CorrectionSettings) -> dict[str, str]:
    """Read, check and store one correction; a RequestError says what was wrong."""
    if settings.folder is None:
        raise RequestError(
            404,
            "corrections are off on this server: start serve.py with "
            "corrections_dir=<folder> to collect them",
        )
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data":
        raise RequestError(415, HOW_TO_SEND)
    body = await read_body(request.scope, request.receive, settings.limits)
    form = await read_form(request.scope, body, HOW_TO_SEND)
    try:
        image = await form_image(form, HOW_TO_SEND)
        character = _character(_text_field(form, "character"), settings.class_names)
        strokes = _strokes(_text_field(form, "strokes", "[]"))
    finally:
        await form.close()
    if not image:
        raise RequestError(400, f"the image is empty (0 bytes): {HOW_TO_SEND}")
    prepared = await anyio.to_thread.run_sync(prepare, image, settings.limits)
    try:
        name = await anyio.to_thread.run_sync(
            lambda: write_correction(
                settings.folder, prepared, image, character, strokes, settings.max_bytes
            )
        )
    except CorrectionsFullError as exc:
        raise RequestError(507, str(exc)) from None
    return {"saved": name, "character": character}


def add_correction_route(app: Any, settings: CorrectionSettings) -> None:
    """POST /correction on the app (answers 404 with how to turn it on when it is off)."""

    async def correction(request: Request) -> JSONResponse:
        try:
            saved = await store_correction(request, settings)
        except RequestError as exc:
            return JSONResponse({"detail": exc.message}, status_code=exc.status)
        return JSONResponse(saved, status_code=201)

    app.add_api_route(
        CORRECTION_PATH,
        correction,
        methods=["POST"],
        summary="Store a correction as training data",
        description=f"Off unless serve.py runs with corrections_dir=<folder>. {HOW_TO_SEND}.",
    )
