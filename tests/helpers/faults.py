"""Faults injected into real runs: a callback that sends a real signal to its own process at a given step
(SIGKILL, as the OOM killer or a node failure would; SIGTERM, as a scheduler's preemption does)."""
from __future__ import annotations

import os
import signal

import lightning as L


class SignalAtStep(L.Callback):
    def __init__(self, step: int, name: str = "SIGKILL") -> None:
        self.step, self.signal = step, getattr(signal, name)
        self.sent = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signal)


class OutOfMemoryAtStep(L.Callback):
    """Raises the error PyTorch raises when a CUDA allocation fails (no GPU here to run out of)."""

    def __init__(self, step: int = 0) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class NonFiniteWeightsAtStep(L.Callback):
    """Turns one weight NaN at the end of a step, as an overflowing update would while its loss was still finite."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            import torch

            with torch.no_grad():
                next(p for p in pl_module.parameters() if p.requires_grad).view(-1)[0] = float("nan")
