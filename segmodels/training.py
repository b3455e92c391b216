"""compose -> instantiate -> fit -> test: the path ``train.py``, the tests and notebooks share."""
from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import EMAWeightAveraging, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from .callbacks import CheckRanksInSync
from .checkpoints import load_matching
from .console import print_config, print_summary, quiet_third_party
from .module import SegmentationModule


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def build_module(cfg: DictConfig, num_classes: int | None = None, class_names: list[str] | None = None) -> SegmentationModule:
    """The module ``cfg`` describes; the class count and names default to ``cfg.dataset``'s."""
    backbone = _plain(cfg.backbone)
    decoder = _plain(cfg.decoder)
    return SegmentationModule(
        backbone=backbone.pop("name"),
        pretrained=backbone.pop("pretrained", True),
        backbone_kwargs=backbone,
        decoder=decoder.pop("name"),
        decoder_kwargs=decoder,
        num_classes=num_classes or cfg.dataset.num_classes,
        in_channels=cfg.get("in_channels", 3),
        class_names=class_names or _plain(cfg.dataset.get("class_names")),
        ignore_index=cfg.dataset.get("ignore_index", 255),
        optimizer=_plain(cfg.optimizer),
        scheduler=_plain(cfg.get("scheduler")),
        log_images=cfg.get("log_images", 4),
        class_weights=_plain(cfg.get("class_weights")),
        loss=_plain(cfg.get("loss")),
    )


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The ``callbacks`` group's entries, in order; progress bars only when the trainer shows one; weight EMA
    when ``ema.decay`` is set."""
    callbacks = [instantiate(entry) for entry in (cfg.get("callbacks") or {}).values() if entry is not None]
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    ema = _plain(cfg.get("ema")) or {}
    if ema.get("decay") is not None:
        if not 0 < ema["decay"] < 1:
            raise ValueError(f"ema.decay={ema['decay']}: give a factor in (0, 1), e.g. 0.999, or null for no EMA")
        callbacks.append(EMAWeightAveraging(**ema))
    return callbacks


def apply_speed_options(module: SegmentationModule, options: DictConfig | dict, trainer: L.Trainer) -> None:
    """``model.channels_last`` (true, false or auto: on CUDA) and ``model.compile`` (torch.compile in place,
    so checkpoint keys stay those of the plain model)."""
    channels_last = options.get("channels_last", False)
    if channels_last == "auto":
        channels_last = isinstance(trainer.accelerator, CUDAAccelerator)
    if channels_last:
        module.use_channels_last()
    if options.get("compile", False):
        module.model.compile()


@rank_zero_only
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, validate every epoch, test the best checkpoint; return (and save) the metrics."""
    quiet_third_party()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.output_dir)
    _write(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    print_config(cfg)

    datamodule = instantiate(cfg.dataset)
    datamodule.prepare_data()
    module = build_module(cfg, datamodule.num_classes, datamodule.class_names)
    module.datamodule_config = _plain(cfg.dataset)  # saved in checkpoints: what evaluate.py reads by default
    if cfg.get("model", {}).get("init_from"):
        load_matching(module, cfg.model.init_from)
    if datamodule.in_channels != module.hparams.in_channels:
        raise ValueError(
            f"images in {datamodule.root} have {datamodule.in_channels} channels but the model is built for "
            f"in_channels={module.hparams.in_channels}; set in_channels={datamodule.in_channels} (or change dataset.image_dirs)"
        )
    if (datamodule.mean, datamodule.std) != (module.mean, module.std):
        raise ValueError(
            f"the datamodule normalises with mean={datamodule.mean}, std={datamodule.std} but backbone "
            f"'{cfg.backbone.name}' expects mean={module.mean}, std={module.std}; drop dataset.mean/std, or set "
            f"dataset.backbone to the model's backbone"
        )
    logger = TensorBoardLogger(save_dir=str(output_dir), name="tensorboard", version="")
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg), logger=logger, default_root_dir=str(output_dir)
    )
    apply_speed_options(module, cfg.get("model", {}), trainer)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    train_seconds = time.perf_counter() - started
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=False, verbose=False)

    metrics = {name: value.item() for name, value in trainer.callback_metrics.items() if value.numel() == 1}
    metrics.update({f"test/{k}": v for k, v in module.test_scores.items()})
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics[f"best/{cfg.monitor}"] = checkpoint.best_model_score.item()
    metrics["best_checkpoint"] = best
    metrics["parameters"] = sum(p.numel() for p in module.parameters())
    metrics["train_seconds"] = train_seconds
    metrics["processes"] = trainer.world_size
    sync = next((c for c in trainer.callbacks if isinstance(c, CheckRanksInSync)), None)
    if sync is not None and sync.checksums:
        metrics["parameter_checksum_per_process"] = sync.checksums
    if torch.cuda.is_available():
        metrics["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    _write(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    if trainer.is_global_zero:  # the best (tested) weights as a folder anyone can load: SegmentationModule.from_pretrained
        scores = {**module.test_scores, "protocol": "single scale, whole images", "split": "test",
                  "dataset": str(datamodule.root)}
        module.save_pretrained(str(output_dir / "model"), scores, OmegaConf.to_yaml(cfg, resolve=True))
    print_summary(output_dir, metrics, cfg.monitor)
    # Lightning's trainer, module and loaders reference each other: without a collection here, every job
    # of a sweep run in one process (hydra -m) would keep its model and optimiser state alive
    del trainer, module, datamodule, checkpoint
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return metrics
