"""Lightning callbacks of this project."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class ConsistentModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `last.ckpt` is rewritten every epoch and never names a best
    checkpoint that is gone.

    Lightning deletes the previous best file as soon as a new best is written, before it
    rewrites `last.ckpt`; a kill between the two leaves `last.ckpt` pointing at a deleted
    file. Here deletions wait until `last.ckpt` records the new state, so after a kill at
    any moment the `last.ckpt` on disk and the files it names agree. Lightning (2.6) also
    rewrites `last.ckpt` only in epochs that improved the best score, so a kill could lose
    many epochs; here it is written at every checkpointing point.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pending_removals: list[str] = []

    def _generate_state_key(self, **kwargs) -> str:
        # Lightning's own key, so checkpoints written with plain ModelCheckpoint resume here.
        return f"ModelCheckpoint{kwargs!r}"

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self._pending_removals.append(filepath)

    def _flush_removals(self, trainer: L.Trainer) -> None:
        pending, self._pending_removals = self._pending_removals, []
        for filepath in pending:
            if filepath not in (self.best_model_path, self.last_model_path):
                super()._remove_checkpoint(trainer, filepath)

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
