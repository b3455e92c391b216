"""Stop a run whose training loss turns NaN or Inf, without a host sync per step."""
from __future__ import annotations

import lightning as L
import torch


class StopOnNonFiniteLoss(L.Callback):
    """Stop when the training loss turns NaN or Inf, naming the first such step.

    The flag and a batch counter live on the device and are read only every ``check_every`` steps and
    before each validation, so the training step never waits on the host; checkpoints already written stay.
    """

    def __init__(self, check_every: int = 50) -> None:
        self.check_every = check_every
        self.first_bad_batch: torch.Tensor | None = None  # batches counted from start_step; -1: none yet
        self.batches: torch.Tensor | None = None
        self.start_step = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = (outputs["loss"] if isinstance(outputs, dict) else outputs).detach()
        if self.batches is None or self.batches.device != loss.device:
            self.batches = torch.zeros((), dtype=torch.long, device=loss.device)
            self.first_bad_batch = torch.full((), -1, dtype=torch.long, device=loss.device)
            self.start_step = trainer.global_step - 1  # the step this first batch belongs to
        bad = ~torch.isfinite(loss) & (self.first_bad_batch < 0)
        self.first_bad_batch = torch.where(bad, self.batches, self.first_bad_batch)
        self.batches += 1
        if trainer.global_step % self.check_every == 0:
            self.check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)
        self.check_weights(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)
        self.check_weights(trainer, pl_module)

    def check_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The last step's update can turn the weights non-finite while its loss was still finite: stop before
        validation and the checkpoint at its end would save them over last.ckpt (one check per epoch)."""
        if not trainer.sanity_checking:
            check_finite_weights(trainer, pl_module)

    def check(self, trainer: L.Trainer) -> None:
        if self.first_bad_batch is not None and int(self.first_bad_batch) >= 0:
            step = self.start_step + int(self.first_bad_batch) // trainer.accumulate_grad_batches
            raise FloatingPointError(
                f"the training loss became NaN or Inf at global step {step} (epoch {trainer.current_epoch}); training "
                f"stopped. Checkpoints written before it are kept. Lower optimizer.lr, check the data, or use "
                f"trainer.precision=32-true if mixed precision overflowed."
            )


def check_finite_weights(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """Raise, naming the step, if any weight or BatchNorm statistic is NaN or Inf: called before anything is saved
    (every checkpoint callback's save and each validation), so no checkpoint ever holds them."""
    tensors = [*pl_module.parameters(), *(b for b in pl_module.buffers() if b.is_floating_point())]
    finite = torch.stack([t.detach().isfinite().all() for t in tensors]).all()  # BatchNorm statistics too
    if not bool(finite):
        raise FloatingPointError(
            f"the model's weights or BatchNorm statistics hold NaN or Inf at global step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}); training stopped before they could be checkpointed. Checkpoints written "
            f"before it are kept. Lower optimizer.lr (or backbone_lr_factor), or use trainer.precision=32-true if "
            f"mixed precision overflowed."
        )
