"""Evaluate a checkpoint on a split under a test protocol (scales, flip, sliding windows) and write the files a
paper or a reviewer asks for: metrics.json (mIoU, Dice, accuracies, boundary IoU, calibration), per_image.csv,
worst.png, reliability.png, the confusion matrix and the IoU chart."""
from __future__ import annotations

import heapq
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import torch
from hydra.utils import get_class, instantiate

from datamodules.progress import progress
from segmodels.evaluation.metrics import SegmentationScores, confusion_per_image
from segmodels.evaluation.report import confusion_scores, scores_report, write_evaluation_files, write_per_image_confusion
from segmodels.io.engines import inference_engine
from segmodels.models.inference import check_scales, predict_probabilities
from segmodels.training.segmentation_module import SegmentationModule

SPLITS = ("train", "val", "test")
log = logging.getLogger(__name__)
TRANSFORMS = "albumentations."  # the only _target_s a checkpoint's dataset config may hold inside the datamodule's


def evaluation_datamodule(module: SegmentationModule, dataset: dict | None, ckpt_path: str, trust: bool = False):
    """``dataset`` (a config) or else the one saved in the checkpoint, normalised as the model expects. A config from
    the checkpoint is instantiated only when it names this project's datamodules (and albumentations transforms
    inside), unless ``trust``: Hydra would otherwise call whatever its ``_target_`` names."""
    config = dict(dataset or module.datamodule_config or {})
    if not config:
        raise ValueError(f"ckpt_path={ckpt_path}: the checkpoint does not say which dataset it was trained on (it "
                         f"predates evaluate.py); name one, e.g. dataset=voc2012 data_dir=/data or dataset=custom "
                         f"dataset.root=/data/mine")
    if not dataset and not trust:
        check_targets(config, ckpt_path)
    config.update(backbone=None, mean=list(module.mean), std=list(module.std))
    return instantiate(config)


def check_label_convention(module: SegmentationModule, dataset: dict | None, model: str) -> None:
    """An imported model scores labels as its source trained on them: refuse a dataset read another way."""
    expected = ((module.imported or {}).get("dataset") or {}).get("reduce_zero_label")
    if expected is None or not dataset:
        return
    given = bool(dataset.get("reduce_zero_label", False))
    if given != expected:
        raise ValueError(f"model={model} was trained with reduce_zero_label={expected} (its preprocessor's "
                         f"do_reduce_labels) but the dataset reads labels with reduce_zero_label={given}; set "
                         f"dataset.reduce_zero_label={str(expected).lower()} so classes line up")


def data_differences(provenance: dict | None, current: dict[str, dict], split: str) -> list[str]:
    """How the ``split`` scored here differs from the one the run recorded (other ids, count or file bytes): then its
    scores are not the run's scores on that split. Empty when they agree or the run recorded nothing."""
    recorded = ((provenance or {}).get("data") or {}).get(split)
    now = current.get(split)
    if not recorded or not now:
        return []
    return [f"the {split} split differs from the one the run was trained and tested with: {key} {recorded[key]} then, "
            f"{now[key]} now; these scores are not the run's {split} scores (check dataset.root and the split files)"
            for key in ("images", "ids_sha256", "bytes") if recorded.get(key) != now.get(key)]


def targets(node: Any, nested: bool = False) -> Iterator[tuple[str, bool]]:
    """Every ``_target_`` in a config, and whether it sits below the top level."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield str(node["_target_"]), nested
        for key, value in node.items():
            if key != "_target_":
                yield from targets(value, True)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from targets(value, True)


def is_project_datamodule(target: str) -> bool:
    """Named inside ``datamodules`` (our own package, so locating it imports nothing foreign) and a DataModule."""
    if not target.startswith("datamodules."):
        return False
    try:
        found = get_class(target)
    except Exception:
        return False
    return issubclass(found, L.LightningDataModule)


def check_targets(config: dict, ckpt_path: str) -> None:
    for target, nested in targets(config):
        allowed = target.startswith(TRANSFORMS) if nested else is_project_datamodule(target)
        if not allowed:
            raise ValueError(
                f"ckpt_path={ckpt_path}: the checkpoint's dataset config names _target_={target}, which is not one of "
                f"this project's datamodules (datamodules.*, with {TRANSFORMS}* transforms inside); it is not "
                f"instantiated. Name the dataset yourself (dataset=<name> or dataset=custom dataset.root=...), or pass "
                f"trust_checkpoint=true for a checkpoint you trust")


def evaluate(
    ckpt_path: str | None,
    output_dir: str | Path,
    dataset: dict | None = None,
    split: str = "test",
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    tile: int | Sequence[int] | None = None,
    overlap: float = 0.25,
    stride: int | Sequence[int] | None = None,
    window_batch: int = 4,
    blend: str = "uniform",
    boundary_ratio: float = 0.02,
    bins: int = 15,
    worst: int = 8,
    device: str = "auto",
    trust_checkpoint: bool = False,
    confusion_counts: bool = False,
    model: str | None = None,
    engine: str = "auto",
    providers: Sequence[str] | None = None,
    fit: Sequence[int] | None = None,
    protocol: dict[str, Any] | None = None,
    grid: str = "mmseg",
) -> dict[str, Any]:
    """Scores of ``ckpt_path`` (a .ckpt) or ``model`` (a model folder, ours or a transformers one) on ``split``; writes
    the files into ``output_dir`` and returns metrics.json's content. ``fit``, ``scales``, ``flip`` and the window
    options are those of ``models.inference.predict_probabilities``; ``protocol`` (a preset's name and source) is
    recorded beside them."""
    scales = check_scales(scales)
    if (ckpt_path is None) == (model is None):
        raise ValueError(f"give one of ckpt_path=<.ckpt file> or model=<model folder> (got ckpt_path={ckpt_path}, "
                         f"model={model})")
    if split not in SPLITS:
        raise ValueError(f"split={split}: choose one of {', '.join(SPLITS)} (the dataset's train_split, val_split or "
                         f"test_split file)")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if model is not None:
        module = SegmentationModule.from_pretrained(model, map_location=device)
        check_label_convention(module, dataset, model)
    else:
        module = SegmentationModule.restore(ckpt_path, map_location=device, trust=trust_checkpoint)
    runner, engine = inference_engine(module, engine, model or ckpt_path, providers=providers)
    data = evaluation_datamodule(module, dataset, ckpt_path or f"model={model}", trust_checkpoint)
    if not data.splits.get(split):
        raise ValueError(f"split={split}: the dataset at {data.root} has no {split} split (dataset.{split}_split is "
                         f"empty); choose another split or set dataset.{split}_split=<file name without .txt>")
    differences = data_differences(module.provenance, data.fingerprint([split]), split)
    for difference in differences:
        log.warning("%s", difference)
    loader = data.loader(split, data.val_batch_size)
    ids = loader.dataset.ids
    num_classes, ignore = module.hparams.num_classes, module.hparams.ignore_index
    scores = SegmentationScores(num_classes, ignore, boundary_ratio, bins).to(device)
    rows, gallery, seen, confusions = [], [], 0, []
    started = time.perf_counter()
    for batch in progress(loader, desc=f"evaluate {split}", unit="batch"):
        raw = batch["image"]
        images, masks = data.normalize(raw.to(device)), batch["mask"].to(device).long()
        probabilities = predict_probabilities(runner, images, flip=flip, tile=tile, overlap=overlap, scales=scales,
                                              stride=stride, window_batch=window_batch, blend=blend, fit=fit, grid=grid)
        scores.update(probabilities, masks)
        predictions = probabilities.argmax(dim=1)
        batch_confusions = confusion_per_image(predictions, masks, num_classes, ignore).cpu()  # one copy a batch
        confusions.append(batch_confusions)
        for i in range(len(images)):
            accuracy, miou = confusion_scores(batch_confusions[i])
            rows.append({"id": ids[seen], "height": masks.shape[-2], "width": masks.shape[-1],
                         "pixel_accuracy": accuracy, "mIoU": miou})
            if worst and miou == miou:  # keep the k lowest mIoU (a max-heap of their negatives)
                entry = (-miou, seen, raw[i].cpu(), masks[i].cpu(), predictions[i].cpu())
                (heapq.heappush if len(gallery) < worst else heapq.heappushpop)(gallery, entry)
            seen += 1
    seconds = time.perf_counter() - started
    result = scores.compute()
    report = scores_report(result, module.class_names)
    metrics = {
        "checkpoint": str(ckpt_path or model), "split": split, "dataset": str(data.root), "images": seen,
        "engine": engine,
        "protocol": {**(protocol or {}), "fit": list(fit) if fit else None, "scales": scales, "flip": flip,
                     "tile": tile, "overlap": overlap if tile and not stride else None,
                     "stride": stride, "blend": blend if tile else None, "grid": grid if tile else None,
                     "boundary_ratio": boundary_ratio, "calibration_bins": bins},
        "seconds": seconds, "seconds_per_image": seconds / max(1, seen), "data_differs_from_training": differences,
        **report,
    }
    write_evaluation_files(Path(output_dir), metrics, rows, sorted(gallery, reverse=True), ids, confusion_counts)
    if split == "test" and confusions:  # the same file train.py's test leaves: compare.py pairs either
        write_per_image_confusion(Path(output_dir), torch.cat(confusions).numpy(), ids[:seen])
    return metrics
