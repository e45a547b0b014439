"""What the console shows: each line once, and none that is a library's noise.

Hydra's logging already prints every log record (and writes it to the run's log file).
Lightning adds a second handler of its own, so each of its lines and the model summary came
twice; it also prints advertising tips, and PyTorch's export stack logs its optimiser passes
at INFO. These are library habits, not news for the user: they are silenced here, once per
process, in one place.
"""

from __future__ import annotations

import logging
import sys
import warnings

# Lightning's advertising ("💡 Tip: ... try installing litlogger/litmodels").
_TIP_PREFIX = "💡 Tip"
# Loggers of the ONNX exporter's optimiser passes ("No unused functions to remove", ...).
_EXPORT_INTERNALS = ("onnxscript", "onnx_ir")


class _DropTips(logging.Filter):
    """Drop Lightning's advertising tips, keep everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_TIP_PREFIX)


_DROP_TIPS = _DropTips()


def drop_lightning_console_copy() -> None:
    """Remove the plain `INFO: ...` handler `import lightning` adds, when the root logger
    (Hydra's) prints the same records; with no root handler, Lightning's own stays."""
    if "lightning" not in sys.modules or not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


def quiet_console() -> None:
    """Silence library noise for the rest of the process (idempotent, cheap)."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _DROP_TIPS not in rank_zero.filters:
        rank_zero.addFilter(_DROP_TIPS)
    for name in _EXPORT_INTERNALS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning 2.6 still uses torch's deprecated LeafSpec; nothing a user can act on.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )
    drop_lightning_console_copy()


def quiet_trial() -> None:
    """Inside a tuner trial, Lightning's INFO lines (devices, "fit stopped", checkpoint
    restores) would repeat for every trial: the sweeper's one line per trial says what
    matters. Warnings still show."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def progress_bar_fits() -> bool:
    """Whether a progress bar can redraw in place: Lightning's tqdm bars write to stdout, and
    into a file or pipe each redraw becomes more text on one enormous line."""
    return sys.stdout.isatty()
