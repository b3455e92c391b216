"""compose -> instantiate -> fit -> test: the path ``train.py``, the tests and notebooks share."""
from __future__ import annotations

import gc
import inspect
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import BatchSizeFinder, EMAWeightAveraging, ProgressBar, WeightAveraging
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from segmodels.io.checkpoint_reader import open_checkpoint
from segmodels.io.checkpoint_writer import SafeCheckpointIO
from segmodels.io.init_from import load_matching, source_architecture
from segmodels.training.cached_training import CachedTraining, feature_cache_options, refusal
from segmodels.training.callbacks import CheckRanksInSync
from segmodels.training.segmentation_module import SegmentationModule

from .console import print_config, print_summary
from .provenance import run_provenance


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def build_module(cfg: DictConfig, num_classes: int | None = None, class_names: list[str] | None = None) -> SegmentationModule:
    """The module ``cfg`` describes; the class count and names default to ``cfg.dataset``'s."""
    backbone = _plain(cfg.backbone)
    for option in CACHE_OPTIONS:  # the run's, not the model's: a checkpoint rebuilds without them
        backbone.pop(option, None)
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
        mean=_plain(cfg.dataset.get("mean")),  # the data's own statistics, when given, normalise in the model too
        std=_plain(cfg.dataset.get("std")),
        freeze=freeze_schedule(cfg),
    )


def freeze_schedule(cfg: DictConfig) -> dict[str, Any] | None:
    """``callbacks.freeze``'s options (None when the entry is dropped: never frozen), which the module records and
    brings to a trainer that has no freeze schedule of its own (a notebook's plain ``L.Trainer``)."""
    entry = _plain((cfg.get("callbacks") or {}).get("freeze"))
    if not entry:
        return None
    return {k: v for k, v in entry.items() if k != "_target_"}


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The ``callbacks`` group's entries, in order; progress bars only when the trainer shows one; weight EMA
    when ``ema.decay`` is set."""
    callbacks = [instantiate(entry) for entry in (cfg.get("callbacks") or {}).values() if entry is not None]
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if cfg.get("tune_batch_size"):  # Lightning's finder doubles dataset.batch_size until memory runs out
        callbacks.insert(0, BatchSizeFinder(mode="power", init_val=cfg.dataset.batch_size))
    ema = _plain(cfg.get("ema")) or {}
    if ema.get("decay") is not None:
        if not 0 < ema["decay"] < 1:
            raise ValueError(f"ema.decay={ema['decay']}: give a factor in (0, 1), e.g. 0.999, or null for no EMA")
        callbacks.append(EMAWeightAveraging(**ema))
    return callbacks


CACHE_OPTIONS = tuple(inspect.signature(feature_cache_options).parameters)


def cached_training(cfg: DictConfig, datamodule: L.LightningDataModule, module: SegmentationModule):
    """``backbone.cache=true``: the datamodule with training batches read from a feature cache, after checking that
    the backbone cannot change during the run; otherwise the datamodule as it is."""
    options = feature_cache_options(**{k: v for k, v in _plain(cfg.backbone).items() if k in CACHE_OPTIONS})
    if not options["cache"]:
        return datamodule
    reason = refusal(module.model, _plain((cfg.get("callbacks") or {}).get("freeze")))
    if reason:
        raise ValueError(f"backbone.cache=true trains from features computed once, so the backbone must not change "
                         f"during the run, but {reason}")
    return CachedTraining(datamodule, module, options["cache_views"], options["cache_dtype"], options["cache_dir"])


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The ``logger`` group's entries (tensorboard by default; ``logger=[tensorboard,mlflow]`` for several), each
    given the composed config, flattened, as its hyper-parameters (backbone/name, seed, dataset/train_fraction ...)."""
    loggers = [instantiate(entry) for entry in (cfg.get("logger") or {}).values() if entry is not None]
    params = OmegaConf.to_container(cfg, resolve=True)
    params.pop("logger", None)
    for logger in loggers:
        logger.log_hyperparams(params)
    return loggers


def record_in_trackers(loggers: list[Logger], output_dir: Path, metrics: dict[str, Any], monitor: str) -> None:
    """What an experiment tracker keeps beside the logged curves: the best monitored value as a metric, and the run's
    metrics.json, plots and model folder as MLflow artifacts."""
    for logger in loggers:
        if f"best/{monitor}" in metrics:
            logger.log_metrics({f"best/{monitor}": metrics[f"best/{monitor}"]})
        if isinstance(logger, MLFlowLogger):
            for name in ("metrics.json", "config.yaml", "confusion_matrix.png", "iou.png", "confusion_matrix.csv"):
                if (output_dir / name).is_file():
                    logger.experiment.log_artifact(logger.run_id, str(output_dir / name))
            if (output_dir / "model").is_dir():
                logger.experiment.log_artifacts(logger.run_id, str(output_dir / "model"), "model")
        logger.finalize("success")  # flushes what came after Lightning's own finalize


def apply_speed_options(module: SegmentationModule, options: DictConfig | dict, trainer: L.Trainer) -> None:
    """``model.channels_last`` (true, false or auto: on CUDA) and ``model.compile`` (torch.compile in place,
    so checkpoint keys stay those of the plain model)."""
    channels_last = options.get("channels_last", False)
    if channels_last == "auto":
        channels_last = isinstance(trainer.accelerator, CUDAAccelerator)
    if channels_last:
        module.use_channels_last()
    if options.get("compile", False):  # the parts, as training calls them one by one (a decoder may own its loss)
        module.model.backbone.compile()
        module.model.decoder.compile()


log = logging.getLogger(__name__)


@rank_zero_only
def _info(message: str) -> None:
    log.info(message)


def resume_path(ckpt_path: str | None, output_dir: Path, trust: bool = False) -> str | None:
    """``ckpt_path`` checked (a missing or broken file is named before training starts), or for ``auto`` the run
    folder's latest state: ``checkpoints/last.ckpt``, or the ``hpc_ckpt_<n>.ckpt`` that Lightning's SLURM requeue
    wrote on SIGUSR1, whichever is newer; nothing there: a fresh start."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path != "auto":
        open_checkpoint(ckpt_path, trust=trust)
        return str(ckpt_path)
    candidates = [p for p in [output_dir / "checkpoints" / "last.ckpt", *output_dir.glob("hpc_ckpt_*.ckpt")] if p.exists()]
    if not candidates:
        _info(f"ckpt_path=auto: no checkpoint in {output_dir}; starting fresh")
        return None
    latest = max(candidates, key=lambda p: p.stat().st_mtime)
    open_checkpoint(latest, "ckpt_path=auto found", trust)
    _info(f"ckpt_path=auto: resuming from {latest}")
    return str(latest)


def out_of_memory_advice(cfg: DictConfig, output_dir: Path) -> str:
    data = cfg.dataset
    return (f"out of GPU memory at dataset.batch_size={data.get('batch_size')}, dataset.crop_size={data.get('crop_size')}, "
            f"trainer.precision={cfg.trainer.get('precision')}. To fit: lower dataset.batch_size or dataset.crop_size; "
            f"keep the effective batch with trainer.accumulate_grad_batches=2 (or more) and a smaller batch; train in "
            f"bf16 with trainer=gpu; recompute activations with backbone.grad_checkpointing=true (large ViTs); or let "
            f"Lightning find the largest batch that fits with tune_batch_size=true. Checkpoints written so far are in "
            f"{output_dir / 'checkpoints'} (run again with ckpt_path=auto to resume).")


@rank_zero_only
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_split_record(datamodule: L.LightningDataModule, monitor: str) -> dict[str, Any]:
    """Which split the test figure is on and whether checkpoints were chosen on it (metrics.json, card, summary)."""
    splits = getattr(datamodule, "splits", None)
    if not splits or not splits.get("test"):
        return {}
    selected_on = splits["val"] if monitor.startswith("val/") else None
    return {"test_split": splits["test"], "test_is_selection_split": splits["test"] == selected_on,
            "test_note": getattr(datamodule, "test_note", None)}


@rank_zero_only
def write_split_files(datamodule: L.LightningDataModule, folder: Path) -> None:
    """The ids each split read, one file per split as ``ImageSets/Segmentation`` holds them: ``dataset.split_dir=
    <run>/splits dataset.split_fractions=null`` reads the same partition again."""
    for stage in ("train", "val", "test"):
        split = datamodule.splits[stage]
        if split and datamodule.split_exists(split):
            ids = datamodule.split_ids(split)
            _write(folder / f"{split}.txt", "\n".join(ids) + "\n")


ARCHITECTURES = ("config", "source")


def with_source_architecture(cfg: DictConfig) -> DictConfig:
    """``model.architecture=source``: the backbone and decoder of ``model.init_from``'s folder replace the configured
    ones (a published checkpoint's exact model, whatever its options), and its input statistics become the dataset's
    unless the dataset names its own. ``config`` (the default) leaves ``cfg`` as it is."""
    model = cfg.get("model") or {}
    architecture = model.get("architecture", "config")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"model.architecture={architecture}: choose config (the backbone and decoder groups) or source "
                         f"(model.init_from's own)")
    if architecture == "config":
        return cfg
    if not model.get("init_from"):
        raise ValueError("model.architecture=source takes the architecture of model.init_from: give "
                         "model.init_from=<model folder>")
    source = source_architecture(model.init_from)
    cfg = cfg.copy()
    kept = {k: cfg.backbone[k] for k in CACHE_OPTIONS if k in cfg.backbone}  # the run's settings, not the model's
    # options the source does not fix (a loss weight, mask annealing) stay the recipe's when it names the same part
    backbone = _plain(cfg.backbone) if cfg.backbone.get("name") == source["backbone"] else {}
    decoder = _plain(cfg.decoder) if cfg.decoder.get("name") == source["decoder"] else {}
    with open_dict(cfg):
        cfg.backbone = {**backbone, "name": source["backbone"], "pretrained": False,
                        **(source["backbone_kwargs"] or {}), **kept}
        cfg.decoder = {**decoder, "name": source["decoder"], **(source["decoder_kwargs"] or {})}
        cfg.in_channels = source["in_channels"] or cfg.get("in_channels", 3)
        if cfg.dataset.get("mean") is None and source["mean"]:
            cfg.dataset.mean, cfg.dataset.std = list(source["mean"]), list(source["std"])
    return cfg


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, validate every epoch, test the best checkpoint; return (and save) the metrics. Changes no warning
    filter: ``train.py`` quiets third-party messages (``console.quiet_third_party``), a notebook keeps its own."""
    cfg = with_source_architecture(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    trust = bool(cfg.get("trust_checkpoint", False))  # open ckpt_path / model.init_from beyond weights-only
    output_dir = Path(cfg.output_dir)
    _write(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    print_config(cfg)

    datamodule = instantiate(cfg.dataset)
    datamodule.prepare_data()
    module = build_module(cfg, datamodule.num_classes, datamodule.class_names)
    module.datamodule_config = _plain(cfg.dataset)  # saved in checkpoints: what evaluate.py reads by default
    if cfg.get("model", {}).get("init_from"):
        load_matching(module, cfg.model.init_from, trust)
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
    training_data = cached_training(cfg, datamodule, module)  # refuses a backbone that can change before any file
    loggers = build_loggers(cfg)
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg), logger=loggers or False, default_root_dir=str(output_dir),
        plugins=[SafeCheckpointIO()],
    )
    apply_speed_options(module, cfg.get("model", {}), trainer)
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    module.provenance = run_provenance(cfg.seed, accelerator, datamodule.fingerprint())  # into every checkpoint
    ckpt_path = resume_path(cfg.get("ckpt_path"), output_dir, trust)
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=training_data, ckpt_path=ckpt_path, weights_only=not trust)
    except torch.OutOfMemoryError as error:
        raise torch.OutOfMemoryError(out_of_memory_advice(cfg, output_dir)) from error
    except SIGTERMException as error:  # last.ckpt was written (LatestCheckpoint); exit as a terminated process does
        raise SystemExit(128 + signal.SIGTERM) from error
    train_seconds = time.perf_counter() - started
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    # best.ckpt's state_dict is the average; loading it for test, weight averaging would put the raw weights back
    # (its on_load_checkpoint restores current_model_state to go on training): test and ship what validation chose
    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]
    trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)  # our own file

    metrics = {name: value.item() for name, value in trainer.callback_metrics.items() if value.numel() == 1}
    metrics.update({f"test/{k}": v for k, v in module.test_scores.items()})
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics[f"best/{cfg.monitor}"] = checkpoint.best_model_score.item()
    metrics["best_checkpoint"] = best
    metrics["parameters"] = sum(p.numel() for p in module.parameters())
    metrics["train_seconds"] = train_seconds
    metrics["processes"] = trainer.world_size
    metrics["batch_size"] = datamodule.batch_size  # per process; tune_batch_size may have changed it
    metrics["provenance"] = module.provenance
    metrics["train_images"] = len(datamodule.dataset("train"))
    metrics.update(test_split_record(datamodule, cfg.monitor))
    if getattr(datamodule, "split_fractions", None):  # a seeded partition: its id lists, to reuse it
        write_split_files(datamodule, output_dir / "splits")
    if datamodule.study:  # which images a subset or a fold trained on
        _write(output_dir / "train_ids.txt", "\n".join(datamodule.dataset("train").ids) + "\n")
    sync = next((c for c in trainer.callbacks if isinstance(c, CheckRanksInSync)), None)
    if sync is not None and sync.checksums:
        metrics["parameter_checksum_per_process"] = sync.checksums
    if torch.cuda.is_available():
        metrics["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    _write(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    if trainer.is_global_zero:  # the best (tested) weights as a folder anyone can load: SegmentationModule.from_pretrained
        scores = {**module.test_scores, "protocol": "single scale, whole images",
                  "split": metrics.get("test_split") or "test", "dataset": str(datamodule.root),
                  "test_note": metrics.get("test_note")}
        module.save_pretrained(str(output_dir / "model"), scores, OmegaConf.to_yaml(cfg, resolve=True))
    if trainer.is_global_zero:
        record_in_trackers(loggers, output_dir, metrics, cfg.monitor)
    print_summary(output_dir, metrics, cfg.monitor)
    # Lightning's trainer, module and loaders reference each other: without a collection here, every job
    # of a sweep run in one process (hydra -m) would keep its model and optimiser state alive
    del trainer, module, datamodule, checkpoint
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return metrics
