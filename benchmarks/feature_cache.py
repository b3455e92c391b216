"""Epoch time of frozen-backbone training with and without the feature cache (backbone.cache=true), this CPU.

    python benchmarks/feature_cache.py                                  # the table in docs/benchmarks.md
    python benchmarks/feature_cache.py --images 8 --size 64 --epochs 2 --pairs resnet18:linear --sweep ""

Generates a demo dataset of ``--images`` training images at ``--size`` px, then for each backbone:decoder pair trains
``--epochs`` epochs with the backbone frozen throughout (random weights: the time is the same), once reading the
images through the backbone every epoch and once from the cache, and reports the median time of the epochs after
the first (the cached run builds its cache in the first), their ratio and the disk each cache takes. ``--sweep``
runs every decoder that fits one frozen backbone both ways. Writes JSON.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import write_results  # noqa: E402  (benchmarks/record.py, beside this script)

from datamodules import VOCSegmentationDataModule, make_demo_dataset  # noqa: E402
from segmodels import SegmentationModule, list_decoders  # noqa: E402
from segmodels.training.cached_training import CachedTraining  # noqa: E402
from segmodels.training.callbacks import FreezeBackbone  # noqa: E402

VIT = {"depth": 12, "adapter": "none"}  # a ViT-S probe: the raw normalised blocks, nothing new inside the backbone


class EpochClock(L.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def run(root: Path, backbone: str, decoder: str, cached: bool, args, cache_dir: Path) -> dict:
    torch.manual_seed(0)
    kwargs = VIT if backbone.startswith("vit") else {}
    module = SegmentationModule(backbone=backbone, decoder=decoder, num_classes=4, pretrained=False,
                                backbone_kwargs=kwargs, optimizer={"name": "adamw", "lr": 1e-3}, log_images=0)
    data = VOCSegmentationDataModule(str(root), num_classes=4, backbone=None, mean=list(module.mean), std=list(module.std),
                                     crop_size=args.size, batch_size=args.batch_size, num_workers=0, test_split=None,
                                     train_transforms=[], check_leakage=False)
    clock = EpochClock()
    training = CachedTraining(data, module, 1, "float16", str(cache_dir)) if cached else data
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[FreezeBackbone(unfreeze_at_epoch=-1), clock])
    trainer.fit(module, datamodule=training)
    later = clock.seconds[1:]
    return {"first_epoch_s": clock.seconds[0], "epoch_s_median": statistics.median(later), "epoch_s": later,
            "cache_mb": training.cache.layout.bytes() / 2**20 if cached else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=[f"{b}:{d}" for b in ("resnet50", "vit_small_patch16_224")
                                                        for d in ("linear", "segformer", "fpn")])
    parser.add_argument("--sweep", default="resnet50", help="one backbone to run every fitting decoder on ('' skips)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/feature_cache.json")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    pairs = [tuple(p.split(":")) for p in args.pairs]
    if args.sweep:
        pairs += [(args.sweep, d) for d in list_decoders() if (args.sweep, d) not in pairs]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        root = make_demo_dataset(Path(scratch) / "demo", splits={"train": args.images, "val": 2}, size=args.size)
        for backbone, decoder in pairs:
            try:
                plain = run(root, backbone, decoder, False, args, Path(scratch) / "cache")
                cached = run(root, backbone, decoder, True, args, Path(scratch) / "cache")
            except ValueError as error:  # a decoder that does not fit this backbone
                results.append({"backbone": backbone, "decoder": decoder, "skipped": str(error)[:200]})
                continue
            row = {"backbone": backbone, "decoder": decoder, "uncached": plain, "cached": cached,
                   "speedup": plain["epoch_s_median"] / cached["epoch_s_median"]}
            results.append(row)
            print(f"{backbone:>24} + {decoder:<14} uncached {plain['epoch_s_median']:7.3f} s/epoch  cached "
                  f"{cached['epoch_s_median']:7.3f} s/epoch  x{row['speedup']:5.1f}  cache {cached['cache_mb']:.1f} MB",
                  flush=True)
            write_results(args, results, torch.device("cpu"))  # after every pair: a stopped run keeps its figures
    write_results(args, results, torch.device("cpu"))


if __name__ == "__main__":
    main()
