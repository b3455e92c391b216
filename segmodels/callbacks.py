"""The freeze-then-unfreeze schedule of seed 000, as a Lightning callback."""
from __future__ import annotations

import lightning as L
import torch


class FreezeBackbone(L.Callback):
    """Keep the backbone frozen for epochs ``< unfreeze_at_epoch`` (-1: frozen throughout, 0: never).

    The state follows from the epoch number alone, so a resumed run is frozen exactly when an
    uninterrupted one would be. Frozen BatchNorm layers stay in eval mode unless ``bn_eval`` is false.
    The optimiser holds every parameter from the start; frozen ones simply get no gradient.
    ``frozen_stages`` early stages (the stem is stage 1) stay frozen for good, as in mmseg's option.
    """

    def __init__(self, unfreeze_at_epoch: int = 1, bn_eval: bool = True, frozen_stages: int = 0) -> None:
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.bn_eval = bn_eval
        self.frozen_stages = frozen_stages

    def frozen_at(self, epoch: int) -> bool:
        return self.unfreeze_at_epoch < 0 or epoch < self.unfreeze_at_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        model.frozen_stages, model.frozen_bn_eval = self.frozen_stages, self.bn_eval
        if self.frozen_at(trainer.current_epoch):
            model.freeze_backbone(bn_eval=self.bn_eval)
        else:
            model.unfreeze_backbone()
        pl_module.log("backbone_frozen", float(model.backbone_frozen), on_step=False, on_epoch=True)


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

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        if self.first_bad_batch is not None and int(self.first_bad_batch) >= 0:
            step = self.start_step + int(self.first_bad_batch) // trainer.accumulate_grad_batches
            raise FloatingPointError(
                f"the training loss became NaN or Inf at global step {step} (epoch {trainer.current_epoch}); training "
                f"stopped. Checkpoints written before it are kept. Lower optimizer.lr, check the data, or use "
                f"trainer.precision=32-true if mixed precision overflowed."
            )


class CheckRanksInSync(L.Callback):
    """Under DDP, compare every parameter across processes at the end of each training epoch.

    DDP keeps replicas equal only while every rank trains the same parameters with the same optimiser
    state; a rank-dependent freeze or a parameter outside the optimiser would let them drift silently.
    One all-gather of a per-parameter sum per epoch: negligible next to an epoch.
    """

    def __init__(self) -> None:
        self.checksums: list[float] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size < 2:
            return
        sums = torch.stack([p.detach().double().sum() for p in pl_module.parameters()])
        gathered = pl_module.all_gather(sums)  # (world_size, parameters)
        drifted = (gathered != gathered[0]).any(dim=0)
        if drifted.any():
            names = [name for (name, _), bad in zip(pl_module.named_parameters(), drifted.tolist()) if bad]
            raise RuntimeError(
                f"epoch {trainer.current_epoch}: {len(names)} parameters differ between DDP processes "
                f"(first: {names[:3]}); every process must train the same parameters"
            )
        self.checksums = gathered.sum(dim=1).tolist()
