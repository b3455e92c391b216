"""How long the leakage check (SHA-256 of every image file, train against val/test) takes on VOC-sized files.

    python benchmarks/leakage_hash.py                          # 10,000 images of 500 x 375, 3 repeats
    python benchmarks/leakage_hash.py --images 1000 --repeats 1

Writes ``--images`` JPEGs (smooth random colour fields with grain at VOC's size and a JPEG quality of 90: about
100 KB each, as VOC 2012's 17,125 JPEGs average), split 80/10/10 into train/val/test, then times ``leaked_pairs``
over them: a warm pass (files in the page cache, as on a second run) each repeat. Writes JSON with the file count,
bytes and seconds per repeat.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from record import write_results  # noqa: E402  (benchmarks/record.py, beside this script)

from datamodules.leakage import leaked_pairs  # noqa: E402


def write_images(folder: Path, count: int, width: int, height: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
        grain = np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)  # photo-like file sizes
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(grain).save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, nargs=2, default=[500, 375], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/leakage_hash.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        paths = write_images(Path(scratch), args.images, *args.size)
        train, val = int(0.8 * len(paths)), int(0.9 * len(paths))
        splits = {"train": [[p] for p in paths[:train]], "val": [[p] for p in paths[train:val]],
                  "test": [[p] for p in paths[val:]]}
        size = sum(p.stat().st_size for p in paths)
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            found = leaked_pairs(splits)
            seconds.append(time.perf_counter() - started)
    results = [{"images": len(paths), "megabytes": size / 2**20, "seconds": seconds, "pairs_found": len(found),
                "images_per_second": len(paths) / min(seconds)}]
    write_results(args, results, torch.device("cpu"))
    print(f"{len(paths)} files, {size / 2**20:.0f} MB: {', '.join(f'{s:.2f}' for s in seconds)} s per full check "
          f"({len(paths) / min(seconds):.0f} images/s)")


if __name__ == "__main__":
    main()
