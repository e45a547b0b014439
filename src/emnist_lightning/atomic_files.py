"""Files replaced in one step: readers (and other workers) see the old file or the new one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replaced_atomically(path: str | Path, suffix: str = ".partial") -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds, rename it over `path`.

    A rename within one folder is atomic, so a crash or kill leaves the previous file. The
    temporary file is removed whatever happens, and its removal never raises a second error
    that would hide the first.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}{suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
