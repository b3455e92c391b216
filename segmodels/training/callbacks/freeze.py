"""The freeze-then-unfreeze schedule of seed 000, as a Lightning callback."""
from __future__ import annotations

import lightning as L


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

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning skips ``on_train_epoch_start`` in an epoch resumed mid-way: set the state here too."""
        self._apply(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(trainer, pl_module)
        pl_module.log("backbone_frozen", float(pl_module.model.backbone_frozen), on_step=False, on_epoch=True)

    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        model.frozen_stages, model.frozen_bn_eval = self.frozen_stages, self.bn_eval
        if self.frozen_at(trainer.current_epoch):
            model.freeze_backbone(bn_eval=self.bn_eval)
        else:
            model.unfreeze_backbone()
