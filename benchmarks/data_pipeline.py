"""Images/s of the training data pipeline (JPEG/PNG decode + augmentation + collate) at 512 x 512 crops.

    python benchmarks/data_pipeline.py                       # 0, 1 and 2 workers
    python benchmarks/data_pipeline.py --workers 0 4 8 --image-size 500

Generates a VOC-layout folder of ``--images`` images (the demo generator at ``--image-size``, about
VOC's 500 x 375), then times full passes of the real training DataLoader after one warm-up pass.
Writes JSON and prints a table.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datamodules import VOCSegmentationDataModule, make_demo_dataset  # noqa: E402


def images_per_second(root: Path, workers: int, crop: int, batch_size: int, passes: int) -> float:
    datamodule = VOCSegmentationDataModule(str(root), num_classes=4, crop_size=crop, batch_size=batch_size,
                                           num_workers=workers, test_split=None, pin_memory=False)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    for _ in loader:  # warm-up: workers start, files enter the page cache
        pass
    count, start = 0, time.perf_counter()
    for _ in range(passes):
        for batch in loader:
            count += len(batch["image"])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=500)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/data_pipeline.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        root = make_demo_dataset(Path(folder) / "data", splits={"train": args.images, "val": 2}, size=args.image_size)
        rows = [{"workers": w, "images_per_s": images_per_second(root, w, args.crop, args.batch_size, args.passes)}
                for w in args.workers]
    result = {"crop": args.crop, "image_size": args.image_size, "batch_size": args.batch_size,
              "cpu_count": torch.multiprocessing.cpu_count(), "machine": platform.processor() or platform.machine(),
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"training pipeline at {args.crop} x {args.crop} crops, {args.image_size} x {args.image_size} JPEGs, "
          f"{result['cpu_count']} CPUs:\n\n| workers | images/s |\n| --- | --- |")
    for row in rows:
        print(f"| {row['workers']} | {row['images_per_s']:.1f} |")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
