"""The LightningModule: plain-valued hyper-parameters, so a checkpoint loads without Hydra."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from datamodules.normalization import Normalization
from segmodels.deprecation import warn_renamed
from segmodels.evaluation.metrics import SegmentationScores, confusion_per_image, format_iou_table
from segmodels.evaluation.pictures import prediction_grid
from segmodels.evaluation.report import SUMMARY_SCORES, scores_report
from segmodels.io.checkpoint_reader import check_safe, legacy_options, open_checkpoint, portable_hyperparameters
from segmodels.io.model_folder import load_weights, read_pretrained, read_provenance, save_pretrained, weight_names
from segmodels.io.transformers_import import is_transformers_folder, read_folder
from segmodels.models.factory import build_model
from segmodels.models.inference import predict_probabilities

from .callbacks.freeze import FreezeBackbone
from .losses import build_loss
from .optimizers import build_optimizer_from_settings, build_schedule

log = logging.getLogger(__name__)


@rank_zero_only
def report_test_table(table: str) -> None:
    log.info("Per-class IoU on the test split (%%):\n%s", table)


# train.py's default schedule (conf/callbacks/default.yaml: freeze): frozen for the first epoch
FREEZE: dict[str, Any] = {"unfreeze_at_epoch": 1, "bn_eval": True, "frozen_stages": 0}


class SegmentationModule(L.LightningModule):
    """Trains ``build_model(backbone, decoder, ...)`` with cross-entropy; reports mIoU over whole splits.

    ``optimizer`` is ``{"name": "adamw", "lr": ..., other optimizer kwargs, "backbone_lr_factor": ...}``;
    ``scheduler`` is ``{"name": "cosine", ...}`` or None, stepped every iteration. ``class_weights``
    weight the training cross-entropy (e.g. ``python -m datamodules.summary --class-weights``). ``mean``/``std``
    replace the backbone's input statistics (``python -m datamodules.summary --channel-stats``), e.g. for 16-bit data.
    ``freeze`` is the backbone's freeze-then-unfreeze schedule (``FreezeBackbone``'s options, train.py's
    ``callbacks.freeze``); the module brings it to any trainer (``configure_callbacks``), so a plain
    ``L.Trainer().fit(module, ...)`` freezes as train.py does. None: never frozen.
    """

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        decoder: str = "unet",
        num_classes: int = 21,
        in_channels: int = 3,
        pretrained: bool = True,
        backbone_kwargs: dict[str, Any] | None = None,
        decoder_kwargs: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        ignore_index: int = 255,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        log_images: int = 4,
        class_weights: list[float] | None = None,
        loss: dict[str, Any] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        freeze: dict[str, Any] | None = FREEZE,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(
            backbone, decoder, num_classes, in_channels, pretrained, backbone_kwargs, decoder_kwargs, mean, std
        )
        self.class_names = list(class_names or [f"class_{i}" for i in range(num_classes)])
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class_names given for num_classes={num_classes}")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"{len(class_weights)} class_weights given for num_classes={num_classes}")
        options = dict(loss or {"name": "ce"})
        if hasattr(self.model.decoder, "loss"):
            if class_weights is not None:
                raise ValueError(f"decoder '{decoder}' trains with its own set loss, which takes no class_weights; drop "
                                 f"class_weights (its no-object weight is decoder.no_object_weight)")
            log.info("decoder '%s' trains with its own set loss; loss=%s scores only val/loss and test/loss",
                     decoder, options.get("name"))
        self.criterion = build_loss(options.pop("name"), ignore_index, class_weights, **options)
        # one metric path: validation, test and evaluate.py accumulate the same SegmentationScores, so their mIoU can
        # never disagree on the same images (validation without boundary IoU, its one costly count)
        self.val_scores_metric = SegmentationScores(num_classes, ignore_index, boundary=False)
        self.test_scores_metric = SegmentationScores(num_classes, ignore_index)  # evaluate.py's, at one scale
        self.test_scores: dict[str, Any] = {}
        # (images, C, C) confusion counts of each test image, in the loader's order: what a paired bootstrap between
        # two runs resamples (segmodels.cli.compare) without running inference again
        self.test_confusions: list[torch.Tensor] = []
        self.test_confusion_per_image: torch.Tensor | None = None
        self._preview: tuple[torch.Tensor, ...] | None = None
        self.memory_format = torch.contiguous_format
        # the dataset config checkpoints carry (evaluate.py's default dataset); train.py sets it, restore reads it
        self.datamodule_config: dict[str, Any] | None = None
        # where the run's numbers come from (commit, command, versions, device, seed, data fingerprint): train.py sets
        # it, checkpoints and model folders carry it
        self.provenance: dict[str, Any] | None = None
        # a model imported from a transformers folder: its source and dataset settings (label convention, classes)
        self.imported: dict[str, Any] | None = None

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, trust_checkpoint: bool = False,
                             **kwargs) -> "SegmentationModule":  # type: ignore[override]
        """Lightning's loader, weights-only unless ``trust_checkpoint`` (see ``io.checkpoint_reader``): a file whose
        pickle asks for more is refused before any of it runs. When the load fails on a missing, broken or refused
        file, the error names the file (the file is read a second time only then)."""
        if isinstance(checkpoint_path, (str, Path)) and not trust_checkpoint:
            check_safe(checkpoint_path, "checkpoint_path")
        kwargs.setdefault("weights_only", not trust_checkpoint)
        if isinstance(checkpoint_path, (str, Path)) and Path(checkpoint_path).is_file() and "decoder_kwargs" not in kwargs:
            saved = open_checkpoint(checkpoint_path, "checkpoint_path", trust_checkpoint)
            hparams = dict(saved.get("hyper_parameters") or {})
            adjusted = legacy_options(hparams, saved["state_dict"])
            if adjusted is not hparams:  # an older layout of a decoder whose default changed: rebuilt as trained
                kwargs["decoder_kwargs"] = adjusted["decoder_kwargs"]
        try:
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        except Exception:
            if isinstance(checkpoint_path, (str, Path)):  # raises the clear error if the file is at fault
                open_checkpoint(checkpoint_path, "checkpoint_path", trust_checkpoint)
            raise

    @classmethod
    def restore(cls, path: str, map_location: str | torch.device = "cpu", key: str = "ckpt_path",
                trust: bool = False) -> "SegmentationModule":
        """The module a checkpoint holds, in eval mode, with clear errors for a missing, broken or unsafe file (``key``
        is the option that named it; ``trust`` opens a file that needs more than a weights-only load)."""
        checkpoint = open_checkpoint(path, key, trust)
        if "hyper_parameters" not in checkpoint:
            raise ValueError(f"{key}={path}: the checkpoint holds no hyper-parameters, so the model cannot be rebuilt; "
                             f"give a checkpoint written by train.py")
        hparams = legacy_options(portable_hyperparameters(dict(checkpoint["hyper_parameters"])), checkpoint["state_dict"])
        module = cls(**hparams)
        module.load_state_dict(checkpoint["state_dict"])
        module.datamodule_config, module.provenance = checkpoint.get("datamodule"), checkpoint.get("provenance")
        return module.to(map_location).eval()

    def save_pretrained(self, folder: str, metrics: dict[str, Any] | None = None, recipe: str | None = None) -> Path:
        """``folder``/model.safetensors, config.json and README.md (see ``segmodels.io.model_folder``)."""
        return save_pretrained(self.model, dict(self.hparams), self.class_names, folder, metrics, recipe, self.provenance)

    @classmethod
    def from_pretrained(cls, folder: str, map_location: str | torch.device = "cpu") -> "SegmentationModule":
        """The model ``save_pretrained`` wrote, or a transformers model folder (SegFormer ...: see
        ``segmodels.io.transformers_import``), in eval mode; needs neither Hydra nor data nor a download."""
        if is_transformers_folder(folder):
            source = read_folder(folder)
            module = cls(**source.hparams)
            module.model.load_state_dict(source.mapped(module.model.state_dict()), strict=True)
            module.imported = source.record
            return module.to(map_location).eval()
        hparams, weights = read_pretrained(folder)
        module = cls(**legacy_options(hparams, weight_names(weights)))
        load_weights(module.model, weights, map_location)
        module.provenance = read_provenance(folder)
        if module.provenance.get("imported_from"):  # a converted checkpoint: its source and label convention
            module.imported = {"source": module.provenance["imported_from"],
                               "dataset": module.provenance.get("dataset_settings") or {}}
        return module.to(map_location).eval()

    def use_channels_last(self) -> None:
        """NHWC weights and inputs: what tensor cores want for convolutions (bf16/fp16 on recent GPUs)."""
        self.memory_format = torch.channels_last
        self.model.to(memory_format=torch.channels_last)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.model.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.model.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self._checked(images).contiguous(memory_format=self.memory_format))

    @staticmethod
    def _checked(images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            raise TypeError(
                "got uint8 images: VOCSegmentationDataModule's loaders ship raw bytes and normalise on the device "
                "in on_after_batch_transfer; pass the datamodule (trainer.fit(module, datamodule=dm)) rather "
                "than its loaders, or call dm.normalize(images) first"
            )
        return images

    def segment(self, image, flip: bool = False, tile: int | Sequence[int] | None = None, overlap: float = 0.25,
                engine: Callable[[torch.Tensor], torch.Tensor] | None = None, **windows: Any) -> np.ndarray:
        """An (H, W) class-index array for one HxWxC uint8 array or PIL image, at the image's own size; ``windows``:
        ``stride``, ``window_batch``, ``blend``, ``fit``, ``grid`` (see ``models.inference.predict_probabilities``);
        ``engine``: what runs the model (``io.engines``; default: this module's model, eager)."""
        array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) and self.hparams.in_channels == 3 else image)
        if array.ndim == 2:
            array = array[..., None]
        if array.shape[-1] != self.hparams.in_channels:
            raise ValueError(f"image has {array.shape[-1]} channels; this model takes {self.hparams.in_channels}")
        x = Normalization(self.mean, self.std)(torch.from_numpy(np.array(array)).permute(2, 0, 1)[None].to(self.device))
        was_training = self.training
        self.eval()
        probabilities = predict_probabilities(engine or self.model, x, flip=flip, tile=tile, overlap=overlap, **windows)
        self.train(was_training)
        return probabilities.argmax(dim=1)[0].cpu().numpy().astype(np.uint8)

    def predict(self, image, flip: bool = False, tile: int | None = None, overlap: float = 0.25) -> np.ndarray:
        """Deprecated name of ``segment`` (renamed so it cannot be confused with Lightning's ``predict_step``)."""
        warn_renamed("SegmentationModule.predict", "SegmentationModule.segment")
        return self.segment(image, flip=flip, tile=tile, overlap=overlap)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if "levels" in batch:  # backbone.cache=true: the frozen backbone's features, read from disk
            levels = batch["levels"]
        else:
            images = self._checked(batch["image"]).contiguous(memory_format=self.memory_format)
            levels = self.model.backbone(self.model.pad(images))
        # the configured loss on the logits, or the decoder's own (mask classification): see SegmentationModel
        loss = self.model.training_loss(levels, batch["mask"], self.criterion, self.hparams.ignore_index)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["mask"]))
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if not self.model.scheduled:
            return
        total = self.trainer.estimated_stepping_batches
        fraction = self.trainer.global_step / total if total and total != float("inf") else 0.0
        self.model.set_progress(min(1.0, fraction))  # a decoder's own schedule (EoMT's mask annealing)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        self.log("val/loss", self.criterion(logits, batch["mask"]), on_epoch=True, sync_dist=True, batch_size=len(logits))
        self.val_scores_metric.update(logits.float().softmax(dim=1), batch["mask"])
        predictions = logits.argmax(dim=1)
        if batch_idx == 0 and self.hparams.log_images:
            k = self.hparams.log_images
            self._preview = (batch["image"][:k], batch["mask"][:k], predictions[:k])

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        self.log("test/loss", self.criterion(logits, batch["mask"]), on_epoch=True, sync_dist=True, batch_size=len(logits))
        self.test_scores_metric.update(logits.float().softmax(dim=1), batch["mask"])
        self.test_confusions.append(confusion_per_image(logits.argmax(dim=1), batch["mask"].long(),
                                                        self.hparams.num_classes, self.hparams.ignore_index))

    def on_test_epoch_start(self) -> None:
        self.test_confusions = []

    def _log_scores(self, scores: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        for name in SUMMARY_SCORES:
            self.log(f"{stage}/{name}", scores[name].float(), prog_bar=name == "mIoU")
        for name, value in zip(self.class_names, scores["iou"]):
            if not torch.isnan(value):
                self.log(f"{stage}/IoU/{name}", value.float())
        return scores

    def on_validation_epoch_end(self) -> None:
        self._log_scores(self.val_scores_metric.compute(), "val")
        self.val_scores_metric.reset()
        experiment = getattr(self.logger, "experiment", None)
        if self._preview is not None and hasattr(experiment, "add_image") and not self.trainer.sanity_checking:
            grid = prediction_grid(*self._preview, self.mean, self.std)
            experiment.add_image("val/predictions", grid, self.global_step)
        self._preview = None

    def on_test_epoch_end(self) -> None:
        scores = self._log_scores(self.test_scores_metric.compute(), "test")
        self.test_scores_metric.reset()
        self.log("test/mean_boundary_iou", scores["mean_boundary_iou"].float())
        self.log("test/ece", scores["ece"].float())
        self.test_scores = scores_report(scores, self.class_names)
        self.test_confusion_per_image = self._gather_per_image(self.test_confusions) if self.test_confusions else None
        self.test_confusions = []
        report_test_table(format_iou_table(scores["iou"].cpu(), self.class_names))

    def _gather_per_image(self, confusions: list[torch.Tensor]) -> torch.Tensor:
        """Every process's per-image counts in the split's order: Lightning's DistributedSampler (no shuffling) gives
        process r the images r, r + W, r + 2W ... (padded to equal shares), so interleaving restores the order; the
        padding's repeats come last and are cut by the writer, which knows the split's length."""
        local = torch.cat(confusions)  # kept on the device during the test: one copy to the host here
        if self.trainer.world_size == 1:
            return local.cpu()
        gathered = self.all_gather(local).cpu()  # (W, n, C, C)
        return gathered.transpose(0, 1).reshape(-1, *local.shape[1:])

    def configure_callbacks(self) -> list[L.Callback]:
        """The callbacks that belong to the model, whatever trainer runs it: the freeze schedule, unless the trainer
        was given a ``FreezeBackbone`` of its own (that one wins: Lightning would otherwise replace it with this)."""
        schedule = self.hparams.get("freeze", FREEZE)
        if schedule is None or any(isinstance(c, FreezeBackbone) for c in self.trainer.callbacks):
            return []
        return [FreezeBackbone(**schedule)]

    def configure_optimizers(self):
        trainer = self.trainer
        batch = getattr(getattr(trainer, "datamodule", None), "batch_size", None)
        global_batch = batch * trainer.world_size * trainer.accumulate_grad_batches if batch else None
        settings = self.hparams.optimizer or {"name": "adamw", "lr": 1e-3}
        optimizer = build_optimizer_from_settings(self.model, settings, global_batch)
        if not self.hparams.scheduler:
            return optimizer
        schedule = dict(self.hparams.scheduler)
        scheduler = build_schedule(optimizer, trainer.estimated_stepping_batches, schedule.pop("name"), **schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        portable_hyperparameters(checkpoint["hyper_parameters"])
        if self.datamodule_config:  # evaluate.py's default dataset
            checkpoint["datamodule"] = self.datamodule_config
        if self.provenance:
            checkpoint["provenance"] = self.provenance

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.datamodule_config = checkpoint.get("datamodule", self.datamodule_config)
        self.provenance = checkpoint.get("provenance", self.provenance)
