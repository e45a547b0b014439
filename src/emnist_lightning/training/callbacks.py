"""Lightning callbacks of this project."""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from emnist_lightning.inference.model_files import FIT_STATUS_NAME
from emnist_lightning.models.provenance import PROVENANCE_KEY, Provenance, now_utc
from emnist_lightning.training.checkpoint_io import LOCK_NAME, PARTIAL_SUFFIX

log = logging.getLogger(__name__)

# The ModelCheckpoint state entries that name files.
_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def checkpoint_in_folder(path: Any, folder: Path) -> Path | None:
    """`path` as a real path directly inside `folder` (itself a real path), or None: a URL
    scheme (`local://`), `..` or a link that leads out of the folder."""
    if not isinstance(path, str) or not path or "://" in path:
        return None
    real = Path(os.path.realpath(path))
    return real if real.parent == folder and real.name.endswith(".ckpt") else None


def _is_score(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and bool(torch.isfinite(value).all())
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _filename_pattern(template: str) -> re.Pattern[str]:
    """The names ModelCheckpoint gives files for `template` (`{epoch:03d}` -> any text,
    with or without `epoch=`), plus its `-v<N>` version suffix."""
    parts = re.split(r"\{[^}]*\}", template)
    return re.compile(".+?".join(re.escape(part) for part in parts) + r"(-v\d+)?\.ckpt")


class ConsistentModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `last.ckpt` is rewritten every epoch and never names a best
    checkpoint that is gone, and whose restored state cannot name files outside its folder.

    Lightning deletes the previous best file as soon as a new best is written, before it
    rewrites `last.ckpt`; a kill between the two leaves `last.ckpt` pointing at a deleted
    file. Here deletions wait until `last.ckpt` records the new state, so after a kill at
    any moment the `last.ckpt` on disk and the files it names agree; a best file that a kill
    kept from its deletion is removed when the run resumes. Lightning (2.6) also rewrites
    `last.ckpt` only in epochs that improved the best score, so a kill could lose many
    epochs; here it is written at every checkpointing point.

    A resumed checkpoint may come from elsewhere (a shared run folder), and Lightning later
    deletes the files its state names, recursively and following URL schemes. So the state
    is data to check: a path that is not a `.ckpt` file directly inside this run's checkpoint
    folder is dropped, and only regular checkpoint files in that folder are ever deleted.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pending_removals: list[str] = []
        # Set by a run that resumes into this folder: its checkpoints are expected there.
        self.resuming = False

    def _ModelCheckpoint__warn_if_dir_not_empty(self, dirpath: str) -> None:
        # Lightning warns about any file in the folder; ours (the run's lock and fit status, a
        # killed write's leftover) are expected, and so are the checkpoints a resumed run carries on from.
        folder = Path(dirpath)
        if self.save_top_k == 0 or self.resuming or not folder.is_dir():
            return
        others = [
            entry.name
            for entry in folder.iterdir()
            if entry.name not in (LOCK_NAME, FIT_STATUS_NAME)
            and not entry.name.endswith(PARTIAL_SUFFIX)
        ]
        if others:
            rank_zero_warn(
                f"Checkpoint directory {dirpath} already holds {', '.join(sorted(others)[:3])}"
                f"{' ...' if len(others) > 3 else ''}: files of an earlier run may be replaced"
            )

    def _generate_state_key(self, **kwargs) -> str:
        # Lightning's own key, so checkpoints written with plain ModelCheckpoint resume here.
        return f"ModelCheckpoint{kwargs!r}"

    # -- restoring -------------------------------------------------------------------------
    def _folder(self) -> Path | None:
        return Path(os.path.realpath(self.dirpath)) if self.dirpath else None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore only what names files inside this run's checkpoint folder."""
        folder = self._folder()
        state = dict(state_dict)
        kept = {}
        for path, score in dict(state.get("best_k_models") or {}).items():
            inside = checkpoint_in_folder(path, folder) if folder else None
            if inside is not None and _is_score(score):
                kept[str(inside)] = score
        for key in _PATH_KEYS:
            inside = checkpoint_in_folder(state.get(key), folder) if folder else None
            state[key] = str(inside) if inside is not None else ""
        if not _is_score(state.get("best_model_score")):
            state["best_model_score"] = None
        if not isinstance(state.get("kth_value"), (torch.Tensor, float)):
            state.pop("kth_value", None)  # Lightning keeps its own starting value
        dropped = len(kept) != len(state.get("best_k_models") or {})
        if dropped or (kept and state["kth_best_model_path"] not in kept):
            log.warning("Ignored checkpoint state naming files outside %s", folder)
            state.update(self._ranked(kept))
        state["best_k_models"] = kept
        state["dirpath"] = self.dirpath  # where this run writes, not what the file says
        super().load_state_dict(state)

    def _ranked(self, scores: dict[str, Any]) -> dict[str, Any]:
        """best/kth entries recomputed from the kept best-k files (none: a fresh start)."""
        if not scores:
            return {"best_model_path": "", "best_model_score": None, "kth_best_model_path": ""}
        order = sorted(scores, key=lambda p: float(scores[p]), reverse=self.mode == "max")
        best, kth = order[0], order[-1]
        return {
            "best_model_path": best,
            "best_model_score": scores[best],
            "kth_best_model_path": kth,
            "kth_value": scores[kth],
        }

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.ckpt_path is not None and trainer.is_global_zero:
            self._remove_stale_best_files(trainer)

    def _remove_stale_best_files(self, trainer: L.Trainer) -> None:
        """Delete best files of this run that its resumed state no longer names (a kill
        after `last.ckpt` was renamed, before the replaced best file was deleted)."""
        folder = self._folder()
        if folder is None or self.save_top_k == -1 or not folder.is_dir():
            return
        named = {*self.best_k_models, self.best_model_path, self.last_model_path}
        named.add(os.path.realpath(trainer.ckpt_path))
        pattern = _filename_pattern(self.filename or "{epoch}-{step}")
        for entry in folder.iterdir():
            if str(entry) not in named and pattern.fullmatch(entry.name):
                log.info("Removed %s, a best checkpoint its run had replaced", entry)
                self._remove_own_file(entry)

    # -- removing --------------------------------------------------------------------------
    def _remove_own_file(self, path: Path) -> None:
        """Unlink `path` if it is a regular file (not a link, not a folder)."""
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                path.unlink()
        except FileNotFoundError:
            pass

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self._pending_removals.append(filepath)

    def _flush_removals(self, trainer: L.Trainer) -> None:
        pending, self._pending_removals = self._pending_removals, []
        folder = self._folder()
        kept = {os.path.realpath(p) for p in (self.best_model_path, self.last_model_path) if p}
        for filepath in pending:
            inside = checkpoint_in_folder(filepath, folder) if folder else None
            if inside is not None and str(inside) not in kept and trainer.is_global_zero:
                self._remove_own_file(inside)

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates) -> None:
        super()._save_topk_checkpoint(trainer, monitor_candidates)
        # Lightning saves last.ckpt only "if a checkpoint was saved in this step".
        self._last_global_step_saved = trainer.global_step
        if not self.save_last:  # nothing else will record the new state: remove now
            self._flush_removals(trainer)

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._flush_removals(trainer)


class SeedEachProcess(L.Callback):
    """Give every DDP process its own random stream for dropout and augmentation.

    All processes start from `seed`, so the net starts identical everywhere; left so,
    process r would draw exactly the dropout masks and augmentation parameters process 0
    draws, only for other images. At fit set-up (before a resumed run restores each
    rank's saved states) rank r reseeds with `seed + r`. One process: nothing changes.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.world_size > 1:
            L.seed_everything(self.seed + trainer.global_rank, workers=True, verbose=False)


class EpochLine(L.Callback):
    """One log line per epoch, for consoles where a progress bar cannot redraw (a file, a
    pipe, CI): the epoch, its time and the epoch means the module logged."""

    # Shown in this order when logged; anything else logged per epoch is left to the loggers.
    SHOWN = ("train/loss", "val/loss", "val/acc", "val/acc_best")

    def __init__(self) -> None:
        self._started = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        shown = [f"{key} {float(metrics[key]):.4f}" for key in self.SHOWN if key in metrics]
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        log.info(
            "Epoch %d%s (%.1f s): %s",
            trainer.current_epoch + 1,
            total,
            time.perf_counter() - self._started,
            ", ".join(shown) or "no metrics logged",
        )


class RecordProvenance(L.Callback):
    """Write the training record (models/provenance.py) into every checkpoint: which run and
    experiment, when, after how many epochs, and the validation accuracy of its weights."""

    def __init__(self, run: str, experiment: str | None) -> None:
        self.run = run
        self.experiment = experiment

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        val_acc = trainer.callback_metrics.get("val/acc")
        checkpoint[PROVENANCE_KEY] = Provenance(
            run=self.run,
            experiment=self.experiment,
            saved_at=now_utc(),
            epochs=trainer.current_epoch + 1,
            max_epochs=trainer.max_epochs
            if trainer.max_epochs and trainer.max_epochs > 0
            else None,
            val_acc=float(val_acc) if val_acc is not None else None,
        ).to_dict()
