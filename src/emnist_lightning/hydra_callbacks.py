"""Hydra callbacks: checks that must happen before Hydra itself touches the disk."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def folder_problem(folder: Path) -> str | None:
    """Why `folder` cannot be created or written into, or None when it can: the one probe of
    run and sweep folders, made before anything is written into them."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(folder) else ""
        return f"{exc.strerror or type(exc).__name__}{where}"
    return None


# The run folder this process's CheckRunFolder created (None: it existed already), and the
# outermost of its parents created with it (logs/, logs/<task>/runs/ on a first run). Only
# folders the run itself created may be removed when the run is refused.
created_run_folder: Path | None = None
created_outermost: Path | None = None


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder on the way to `folder` that does not exist yet."""
    missing = None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def refuse_empty_log_dir(config: DictConfig) -> None:
    """`paths.log_dir=` (empty) would put every run under /<task>/runs, at the root."""
    log_dir = config.get("paths", {}).get("log_dir", "logs")
    if log_dir is not None and not str(log_dir).strip():
        print(
            "error: paths.log_dir is empty: set it to a folder, e.g. paths.log_dir=logs",
            file=sys.stderr,
        )
        raise SystemExit(2)


class CheckRunFolder(Callback):
    """Refuse a run whose output folder cannot be written, in one line and before Hydra
    would fail on it with a traceback (a log path that is a file, a read-only folder)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global created_run_folder, created_outermost
        refuse_empty_log_dir(config)
        folder = Path(str(config.hydra.run.dir))
        outermost = _first_missing(folder)
        problem = folder_problem(folder)
        if problem is None and outermost is not None:
            created_run_folder, created_outermost = folder, outermost
        if problem is not None:
            print(
                f"error: cannot write the run folder {folder}: {problem}; "
                "set paths.log_dir (or hydra.run.dir) to a writable folder",
                file=sys.stderr,
            )
            raise SystemExit(2)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_empty_log_dir(config)
