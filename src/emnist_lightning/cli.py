"""What every entry point shares: unique run folders, and user errors as one line + exit 2."""

from __future__ import annotations

import errno
import functools
import logging
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf import OmegaConf

from emnist_lightning.console import quiet_console
from emnist_lightning.errors import UserError

T = TypeVar("T")
# A write that failed for want of room: a full disk, a full quota, a file-size limit.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
log = logging.getLogger("emnist_lightning")

# One value per process: `${run_suffix:}` in hydra.run.dir keeps runs started in the same
# second apart. (Lightning's DDP workers get the launcher's folder passed explicitly.)
RUN_SUFFIX = secrets.token_hex(3)
OmegaConf.register_new_resolver("run_suffix", lambda: RUN_SUFFIX, replace=True)

# What Hydra writes into a run folder before the task starts, and what a run writes before
# it trains (its resolved config): a run refused at its start leaves nothing else.
_BOOKKEEPING = {".hydra", "config_resolved.yaml"}


def _holds_results(entry: Path) -> bool:
    """Whether a run-folder entry holds anything a refused run could have produced: not
    bookkeeping, a log, or a checkpoint folder with nothing but its lock and fit status."""
    if entry.name in _BOOKKEEPING or entry.suffix == ".log":
        return False
    if entry.is_dir() and not entry.is_symlink():
        from emnist_lightning.inference.model_files import FIT_STATUS_NAME
        from emnist_lightning.training.checkpoint_io import LOCK_NAME

        return any(child.name not in (LOCK_NAME, FIT_STATUS_NAME) for child in entry.iterdir())
    return True


def remove_untouched_run_folder() -> None:
    """Delete this run's folder if the task wrote nothing into it (a refused run leaves none)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.RUN:
            return
        folder = Path(hydra_cfg.runtime.output_dir)
    except (ImportError, ValueError):
        return
    from emnist_lightning import hydra_callbacks

    if hydra_callbacks.created_run_folder != folder or not folder.is_dir():
        return  # never remove a folder the run did not create itself
    if not any(_holds_results(entry) for entry in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)
        _remove_empty_parents(folder, hydra_callbacks.created_outermost)


def _remove_empty_parents(folder: Path, outermost: Path | None) -> None:
    """Remove the refused run's parents this run created (logs/<task>/runs/ on a first run),
    as long as they are empty: a refused first run leaves no folder at all."""
    if outermost is None or folder == outermost:
        return
    for parent in folder.parents:
        try:
            parent.rmdir()  # only ever removes an empty folder
        except OSError:
            return
        if parent == outermost:
            return


def exit_on_user_error(func: Callable[..., T]) -> Callable[..., T]:
    """Wrap a task so UserError prints `error: <message>` and exits 2 instead of a traceback;
    the task runs with library noise silenced (console.quiet_console)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> T:
        quiet_console()
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            message = str(exc)
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            message = (
                f"{exc.strerror or 'no space left on device'}{where}: free some space, or "
                "point paths.log_dir at another disk"
            )
        log.debug("user error", exc_info=True)
        logging.shutdown()  # close the run's log file before its folder may be removed
        remove_untouched_run_folder()
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None

    return wrapper
