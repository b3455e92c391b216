"""What each test protocol costs and gives: seconds per image and mIoU for one scale, six scales, six scales +
flip, and sliding windows, on the demo test split and on a larger generated set.

    python train.py hydra.run.dir=outputs/demo                     # a checkpoint to evaluate (the default run)
    python benchmarks/eval_protocols.py --ckpt outputs/demo/checkpoints/best.ckpt

The larger set is the demo generator at ``--large-size`` pixels (default 256: 16x the pixels of the 64 x 64
images the model was trained on; shapes are drawn at the same relative size, so they are 4x larger in pixels).
Each protocol runs ``segmodels.cli.evaluate.evaluate`` as ``evaluate.py`` does, one after the other in one process
(after a warm-up pass). Writes JSON and prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from record import write_results  # noqa: E402

from datamodules import make_demo_dataset  # noqa: E402
from segmodels.cli.evaluate import evaluate  # noqa: E402
from segmodels.training.segmentation_module import SegmentationModule  # noqa: E402

SIX = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def protocols(size: int) -> dict[str, dict]:
    return {"1 scale": {}, "6 scales": {"scales": SIX}, "6 scales + flip": {"scales": SIX, "flip": True},
            f"sliding {size // 2} px": {"tile": size // 2, "overlap": 0.25}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--large-size", type=int, default=256)
    parser.add_argument("--large-images", type=int, default=24)
    parser.add_argument("--engine", default="torch", help="what runs the model (segmodels.io.engines): torch, as the "
                                                          "published table was measured, or onnxruntime, compile, auto")
    parser.add_argument("--out", default="benchmarks/results/eval_protocols.json")
    args = parser.parse_args()
    module = SegmentationModule.restore(args.ckpt)
    demo = dict(module.datamodule_config)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        large_root = make_demo_dataset(Path(scratch) / "large", splits={"train": 1, "val": 1, "test": args.large_images},
                                       size=args.large_size, seed=1)
        sets = {f"demo test ({demo.get('image_size', 64)} px)": (demo, demo.get("image_size", 64)),
                f"generated test ({args.large_size} px)": ({**demo, "root": str(large_root), "image_size": args.large_size,
                                                            "val_batch_size": 1}, args.large_size)}
        for name, (dataset, size) in sets.items():
            # caches, allocator, threads
            evaluate(args.ckpt, Path(scratch) / "warmup", dataset=dataset, worst=0, engine=args.engine)
            for protocol, options in protocols(size).items():
                metrics = evaluate(args.ckpt, Path(scratch) / "run", dataset=dataset, worst=0, engine=args.engine,
                                   **options)
                rows.append({"dataset": name, "protocol": protocol, "images": metrics["images"],
                             "seconds_per_image": metrics["seconds_per_image"], "mIoU": metrics["mIoU"],
                             "mean_boundary_iou": metrics["mean_boundary_iou"], "ece": metrics["ece"]})
                print(rows[-1], flush=True)
    write_results(args, rows, torch.device("cpu"))
    print(f"\n{module.hparams.backbone} + {module.hparams.decoder}, CPU ({torch.get_num_threads()} threads):\n")
    print("| test set | protocol | s / image | x 1 scale | mIoU (%) | boundary IoU (%) | ECE (%) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        base = next(r for r in rows if r["dataset"] == row["dataset"] and r["protocol"] == "1 scale")
        print(f"| {row['dataset']} | {row['protocol']} | {row['seconds_per_image']:.4f} | "
              f"{row['seconds_per_image'] / base['seconds_per_image']:.1f} | {100 * row['mIoU']:.2f} | "
              f"{100 * row['mean_boundary_iou']:.2f} | {100 * row['ece']:.2f} |")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
