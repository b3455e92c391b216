"""Lightning's ModelCheckpoint with a ``last.ckpt`` that always holds the latest state."""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .nonfinite import check_finite_weights

log = logging.getLogger(__name__)


class LatestCheckpoint(ModelCheckpoint):
    """``save_last="link"`` keeps the write cheap by linking ``last.ckpt`` to the file this callback saved
    last; with a ``monitor`` that is the last *best* file, so once the metric stops improving
    ``last.ckpt`` goes stale and a resume silently repeats every epoch since the best one.

    Here ``last.ckpt`` links to a top-k file only when that file was written at this very step (the
    cheap case, as before); otherwise it is written in full, replacing the link, never through it.

    ``every_n_steps`` / ``every_n_minutes`` also write ``last.ckpt`` within epochs (the best file still follows
    validation only), after checking that no weight is NaN or Inf, and on SIGTERM (a scheduler's preemption,
    ``kill``) the run writes it before it exits.
    """

    def __init__(self, *args: Any, every_n_steps: int | None = None, every_n_minutes: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.every_n_steps, self.every_n_minutes = every_n_steps, every_n_minutes
        self._last_time = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        step_due = bool(self.every_n_steps) and trainer.global_step % self.every_n_steps == 0
        time_due = False
        if self.every_n_minutes:  # rank 0's clock decides for every process (a collective only when asked for)
            time_due = trainer.strategy.broadcast(time.monotonic() - self._last_time >= 60 * self.every_n_minutes)
            if time_due:
                self._last_time = time.monotonic()
        if (step_due or time_due) and not self._should_skip_saving_checkpoint(trainer):
            check_finite_weights(trainer, pl_module)  # the loss flag is read only every few steps: look at the weights
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and self.save_last:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            if trainer.is_global_zero:
                log.warning(f"SIGTERM: saved the latest state (step {trainer.global_step}) to {self.last_model_path}; "
                            f"run again with ckpt_path=auto (or ckpt_path={self.last_model_path}) to resume")

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        path = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        # a top-k file written at this very step, other than last.ckpt itself: the cheap link is right
        linkable = self._last_global_step_saved == trainer.global_step and self._last_checkpoint_saved not in ("", path)
        if self.save_last == "link" and not linkable:
            self._last_checkpoint_saved = ""  # nothing to link to: write last.ckpt itself
            if trainer.is_global_zero and os.path.islink(path):
                os.remove(path)  # saving to the link's path would overwrite the best checkpoint it points to
            trainer.strategy.barrier()
        super()._save_last_checkpoint(trainer, monitor_candidates)
