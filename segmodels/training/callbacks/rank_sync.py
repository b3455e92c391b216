"""Under DDP, stop a run whose processes drifted apart."""
from __future__ import annotations

import lightning as L
import torch


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
