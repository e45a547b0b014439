"""Checkpoint files that a crash, a kill -9 or a second process cannot leave inconsistent."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from emnist_lightning.atomic_files import replaced_atomically, save_torch_file
from emnist_lightning.errors import CheckpointError, first_line

PARTIAL_SUFFIX = ".partial"
LOCK_NAME = ".lock"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, fsyncs, then renames over it.

    Lightning's own save goes through a temporary file in the system temp folder and a
    move, which is a non-atomic copy when that folder is on another disk; a rename within
    one folder is atomic, so `last.ckpt` is always either the old or the new checkpoint.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with replaced_atomically(path, PARTIAL_SUFFIX) as partial:
                save_torch_file(checkpoint, partial)
        except (OSError, RuntimeError) as exc:
            detail = getattr(exc, "strerror", None) or first_line(exc)
            raise CheckpointError(
                f"cannot write checkpoint {path} ({detail}): make its folder "
                "writable or point paths.log_dir at one that is"
            ) from None

    def remove_checkpoint(self, path: str | Path) -> None:
        """Unlink a checkpoint file; never a folder (Lightning's removes recursively) or what
        a link points to."""
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)


def remove_partial_files(folder: str | Path) -> list[Path]:
    """Delete temporary checkpoint files left by a killed run; call with the folder locked."""
    removed = []
    for leftover in Path(folder).glob(f".*{PARTIAL_SUFFIX}"):
        with contextlib.suppress(OSError):
            leftover.unlink()
            removed.append(leftover)
    return removed


def _open_lock_file(path: Path) -> IO[str]:
    """Open the lock file itself, never what a link (symbolic or hard) makes of it: a run
    folder from elsewhere may ship a `.lock` that leads to a file we would overwrite. Such
    a lock is replaced by a fresh file (no run of ours can hold a lock through it)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for _ in range(3):
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            path.unlink()  # a symbolic link: remove the link, never its target
            continue
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            return os.fdopen(fd, "a+")
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "its .lock is a folder", str(path))
        path.unlink()  # a hard link, a FIFO, a device: not ours to write into
    raise OSError(errno.EEXIST, "its .lock keeps being replaced", str(path))


@contextlib.contextmanager
def checkpoint_folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on a checkpoint folder for as long as a run writes into it.

    The lock is an flock on `<folder>/.lock`: the kernel releases it when its process ends,
    however it ends, so a lock left by a killed run never blocks the next one. A second run
    (e.g. `ckpt_path=last` while the first still trains) is refused in one line.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = _open_lock_file(folder / LOCK_NAME)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write into checkpoint folder {folder} ({exc.strerror or exc}): make it "
            "writable or point paths.log_dir at a folder that is"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise CheckpointError(
                f"{folder} is in use by a run that is still training ({owner}): wait for it "
                "to finish, or resume from a copy of its last.ckpt in another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
