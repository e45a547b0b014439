"""Turns user errors into one line on stderr and exit status 2 for the entry points."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from .errors import UserError

T = TypeVar("T")
log = logging.getLogger("emnist_lightning")


def exit_on_user_error(func: Callable[..., T]) -> Callable[..., T]:
    """Wrap a task so UserError prints `error: <message>` and exits 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            log.debug("user error", exc_info=True)
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
