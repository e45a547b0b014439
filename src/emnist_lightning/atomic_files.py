"""Files replaced in one step: readers (and other workers) see the old file or the new one."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def save_torch_file(obj: Any, path: str | Path) -> None:
    """torch.save through memory, then one plain write and an fsync: a full disk is then the
    OS's own error (OSError ENOSPC, "No space left on device"), where torch's zip writer
    says "[enforce fail at inline_container.cc] unexpected pos"."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with Path(path).open("wb") as f:
        f.write(buffer.getbuffer())
        f.flush()
        os.fsync(f.fileno())


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
