"""Frozen-backbone training at decoder cost: ``backbone.cache=true`` trains the decoder from backbone features
computed once and kept on disk (``segmodels.io.feature_cache``), instead of running the frozen backbone every epoch.

Valid only while the backbone cannot change: frozen for the whole run (``callbacks.freeze.unfreeze_at_epoch=-1``)
with its BatchNorm statistics fixed (``bn_eval=true``), no LoRA, and no new weights inside it (a ViT's pyramid
adapter trains, so a ViT caches only as the probe, ``backbone.adapter=none``); anything else is refused with the
reason. ``backbone.cache_views=K`` stores K augmented views of every training image, each drawn with the per-(sample,
epoch) seeding the loaders use (view v is what epoch v's loader would give), and epoch e reads view e mod K; the
mask of each view is stored with it. K=1 with augmentation off (``dataset.train_transforms=[]``) is the classic probe
cache and, in float32, trains exactly as without the cache (tested). Validation and test run the whole model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from segmodels.io.feature_cache import DTYPES, CacheLayout, FeatureCache, weights_digest
from segmodels.models.segmentation_model import SegmentationModel


def feature_cache_options(cache: bool = False, cache_views: int = 1, cache_dtype: str = "float16",
                          cache_dir: str | None = None) -> dict[str, Any]:
    """The options every backbone takes for the cache (``backbone.cache=true`` ...): their defaults are here."""
    if cache_views < 1:
        raise ValueError(f"backbone.cache_views={cache_views}: give 1 or more augmented views per image")
    if cache_dtype not in DTYPES:
        raise ValueError(f"backbone.cache_dtype={cache_dtype}: choose one of {', '.join(DTYPES)}")
    return {"cache": cache, "cache_views": cache_views, "cache_dtype": cache_dtype, "cache_dir": cache_dir}


def refusal(model: SegmentationModel, freeze: dict[str, Any] | None) -> str | None:
    """Why this run cannot train from cached features, or None when it can."""
    freeze = freeze or {}
    if freeze.get("unfreeze_at_epoch", 1) != -1:
        return (f"the backbone unfreezes at epoch {freeze.get('unfreeze_at_epoch', 1)}, after which its features change; "
                f"keep it frozen for the whole run with callbacks.freeze.unfreeze_at_epoch=-1")
    if not freeze.get("bn_eval", True):
        return "callbacks.freeze.bn_eval=false lets the frozen backbone's BatchNorm statistics move; set it to true"
    if model.fixed:
        return "LoRA adapters train inside the backbone; drop backbone.lora_rank"
    if model.backbone.fresh:
        return (f"the backbone's new weights ({', '.join(model.backbone.fresh)}) train with the decoder; for a ViT use "
                f"the probe's backbone.adapter=none")
    return None


class CachedFeatures(Dataset):
    """Rows of a complete cache as training samples; ``(epoch, index)`` keys (EpochShuffleSampler's) read view
    ``epoch mod views`` of image ``index``."""

    def __init__(self, cache: FeatureCache, levels: int) -> None:
        self.cache, self.count = cache, levels

    def __len__(self) -> int:
        return self.cache.layout.images

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        row = (epoch % self.cache.layout.views) * self.cache.layout.images + index
        levels, mask = self.cache.read(row)
        return {"levels": {str(i): v for i, v in levels.items()}, "mask": mask}


class CachedTraining(L.LightningDataModule):
    """The run's datamodule, with training batches read from the feature cache (built on first use, on the
    model's device); validation and test batches are the datamodule's own."""

    def __init__(self, data: L.LightningDataModule, module: L.LightningModule, views: int = 1, dtype: str = "float16",
                 folder: str | None = None) -> None:
        super().__init__()
        self.data, self.module, self.views, self.dtype = data, module, views, dtype
        self.folder = Path(folder) if folder else Path(data.root) / ".feature_cache"
        self.cache: FeatureCache | None = None

    def __getattr__(self, name: str):  # batch_size, num_classes, root ... are the wrapped datamodule's
        if name in ("data", "module") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.data, name)

    def prepare_data(self) -> None:
        self.data.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.data.trainer = self.trainer
        self.data.setup(stage)

    def val_dataloader(self) -> DataLoader:
        return self.data.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.data.test_dataloader()

    def train_dataloader(self) -> DataLoader:
        images = self.data.train_dataloader()  # the loader training would use: its sampler, seed and batches
        cache = self.cache = self.open(images.dataset, images.batch_size)
        model = self.module.model
        dataset = CachedFeatures(cache, len(model.backbone.channels))
        return DataLoader(dataset, batch_size=images.batch_size, sampler=images.sampler, drop_last=images.drop_last,
                          num_workers=0, generator=images.generator)

    def open(self, dataset, batch_size: int) -> FeatureCache:
        """The complete cache for ``dataset`` under this run's backbone: found, finished or built."""
        model: SegmentationModel = self.module.model
        used = sorted(model.decoder.levels)
        first = dataset[(0, 0)]
        with torch.no_grad():
            probe = self.levels_of(first["image"][None])
        layout = CacheLayout(self.views, len(dataset), {i: list(probe[i].shape[1:]) for i in used},
                             list(first["mask"].shape), self.dtype)
        key = {"backbone": self.module.hparams.backbone, "backbone_kwargs": self.module.hparams.backbone_kwargs,
               "weights": weights_digest(model.backbone), "transforms": repr(dataset.transform), "seed": dataset.seed,
               "ids": list(dataset.ids), "files": [[str(p) for p in images] for images in dataset.images],
               "sizes": [p.stat().st_size for p in dataset.masks], "mean": list(model.mean), "std": list(model.std)}
        cache = FeatureCache.at(self.folder, layout, key)
        if not cache.complete and self.trainer.is_global_zero:
            self.build(cache, dataset, batch_size)
        self.trainer.strategy.barrier()
        cache.open_for_reading()
        return cache

    def levels_of(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        model: SegmentationModel = self.module.model
        device = next(model.parameters()).device
        x = self.data.normalize(images.to(device))
        was_training = model.backbone.training
        model.backbone.eval()
        try:
            levels = model.backbone(model.pad(x))
        finally:
            model.backbone.train(was_training)
        return {i: levels[i] for i in model.decoder.levels}

    @torch.no_grad()
    def build(self, cache: FeatureCache, dataset, batch_size: int) -> None:
        needed = cache.check_space()
        start = cache.written()
        rank_zero_info(f"feature cache: {cache.layout.rows} rows ({self.views} view(s) x {cache.layout.images} images), "
                       f"{needed / 2**20:.1f} MiB in {cache.folder}" + (f"; resuming at row {start}" if start else ""))
        cache.open_for_writing()
        dtype = DTYPES[self.dtype]
        for begin in range(start, cache.layout.rows, batch_size):
            rows = range(begin, min(begin + batch_size, cache.layout.rows))
            samples = [dataset[(row // cache.layout.images, row % cache.layout.images)] for row in rows]
            levels = self.levels_of(torch.stack([s["image"] for s in samples]))
            cache.write(begin, {i: v.float().cpu().numpy().astype(dtype) for i, v in levels.items()},
                        np.stack([s["mask"].numpy() for s in samples]))
        cache.finish()

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if "levels" in batch:  # cached features: float32 for the decoder, masks as class indices
            return {"levels": {i: v.float() for i, v in batch["levels"].items()}, "mask": batch["mask"].long()}
        return self.data.on_after_batch_transfer(batch, dataloader_idx)
