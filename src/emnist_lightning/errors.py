"""Errors a user can fix; entry points print them as one line instead of a traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class UserError(Exception):
    """Bad input from the user (config, data files, checkpoints): the message says what to do."""


class ConfigError(UserError):
    """An override or config value that cannot work."""


class DataFilesError(UserError):
    """EMNIST files that are missing, truncated or corrupt."""


class CheckpointError(UserError):
    """A checkpoint that is missing or does not fit the model or data."""


class ModelFileError(CheckpointError):
    """A model file (or its model card) with a field that is missing, of the wrong type or out
    of range: refused before anything is built from it."""


class ImageInputError(UserError):
    """An image that cannot be read or holds no character."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut to `limit` characters (its type's name
    when it has none): what a one-line error quotes of a library's multi-line message."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


@contextlib.contextmanager
def user_errors_unwrapped() -> Iterator[None]:
    """Re-raise a UserError that a library wrapped (Hydra's instantiate wraps every error
    raised while building an object), so it still reaches the user as one line."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        cause = exc.__cause__
        while cause is not None:
            if isinstance(cause, UserError):
                raise cause from None
            cause = cause.__cause__
        raise
