"""A resumed run that repeats the uninterrupted one exactly, even from a checkpoint taken mid-epoch."""
from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


class ExactResume(L.Callback):
    """Two things Lightning does not restore by itself:

    - the position in the epoch: resuming from a mid-epoch checkpoint, the epoch's sampler
      (``datamodules.sampling.EpochShuffleSampler``) starts after the batches already trained on, so no image is
      seen twice and none skipped (augmentations are seeded per (seed, epoch, image), so they repeat too);
    - the random number generators (dropout, stochastic depth): their states at the checkpoint come back just
      before the next training batch, after the loader and Lightning have drawn what they draw at start-up.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        name, keys, position, has_gauss, gauss = np.random.get_state()  # as tensors and numbers: weights_only loads
        states = {"torch": torch.get_rng_state(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position,
                                                            has_gauss, gauss), "python": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return {"rng": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning skips ``on_train_epoch_start`` in an epoch resumed mid-way; this hook always runs first."""
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed if trainer.fit_loop.restarted_mid_epoch else 0
        self._position(trainer, done if 0 < done < trainer.num_training_batches else 0)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._position(trainer, 0)  # a new epoch starts at its beginning

    @staticmethod
    def _position(trainer: L.Trainer, batches: int) -> None:
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "start"):
            sampler.start = batches * loader.batch_size

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._pending is None:
            return
        torch.set_rng_state(self._pending["torch"])
        name, keys, position, has_gauss, gauss = self._pending["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        random.setstate(self._pending["python"])
        if "cuda" in self._pending and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self._pending["cuda"])
        self._pending = None
