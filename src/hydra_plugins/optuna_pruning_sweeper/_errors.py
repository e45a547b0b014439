"""Sweep settings a user can fix: printed as one `error: ...` line with exit status 2."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class SweepConfigError(Exception):
    """A sweeper setting, search space or trial config that cannot work; the message says what
    to change."""


def one_line(exc: BaseException) -> str:
    """An exception and its causes as one line, led by its type (`RuntimeError: ...`), as a
    traceback's last line would show it; Hydra puts the useful part in the cause."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 3:
        text = " ".join(str(current).split())
        if text and text not in parts:
            parts.append(text)
        current = current.__cause__ or current.__context__
    return f"{type(exc).__name__}: {'; '.join(parts)}" if parts else type(exc).__name__


def message_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def exit_on_config_error(func: Callable[..., T]) -> Callable[..., T]:
    """Print a SweepConfigError as `error: <message>` and exit 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except SweepConfigError as exc:
            log.debug("sweep refused", exc_info=True)
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
