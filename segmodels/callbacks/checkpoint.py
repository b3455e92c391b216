"""Lightning's ModelCheckpoint with a ``last.ckpt`` that always holds the latest state."""
from __future__ import annotations

import os

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LatestCheckpoint(ModelCheckpoint):
    """``save_last="link"`` keeps the write cheap by linking ``last.ckpt`` to the file this callback saved
    last; with a ``monitor`` that is the last *best* file, so once the metric stops improving
    ``last.ckpt`` goes stale and a resume silently repeats every epoch since the best one.

    Here ``last.ckpt`` links to a top-k file only when that file was written at this very step (the
    cheap case, as before); otherwise it is written in full, replacing the link, never through it.
    """

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        if self.save_last == "link" and self._last_global_step_saved != trainer.global_step:
            self._last_checkpoint_saved = ""  # nothing written at this step to link to: write last.ckpt itself
            path = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
            if trainer.is_global_zero and os.path.islink(path):
                os.remove(path)  # saving to the link's path would overwrite the best checkpoint it points to
            trainer.strategy.barrier()
        super()._save_last_checkpoint(trainer, monitor_candidates)
