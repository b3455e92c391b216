"""Peak memory and time of predict.py on GeoTIFFs of growing size: window by window, memory stays flat.

    python benchmarks/out_of_core.py                                   # 2,048^2, 8,192^2 and 20,000^2 px, CPU
    python benchmarks/out_of_core.py --overlap 0 --in-memory 2048      # abutting windows: the figures in the docs
    python benchmarks/out_of_core.py --sides 2048 --in-memory 2048     # also the whole-image path, for comparison

Each image is a generated 3-band uint8 GeoTIFF (UTM 33N, tiled, deflate; smooth shapes plus noise), written strip by
strip so that making it needs little memory either. The model is the default run's architecture (EfficientNet-Lite0
+ U-Net, 4 classes) with random weights, saved as a model folder. predict.py runs in a child process under
``/usr/bin/time -v`` (its peak resident memory) with 512 x 512 windows at ``--overlap`` (0.25), ``--window-batch``
(1) and the default engine; the output's CRS, transform and tiling are read back and checked. ``--in-memory N`` also runs
``stream=never`` on images up to N pixels a side (the whole image and a float32 classes x H x W sum in memory) and
checks that both class maps agree.
Writes JSON, prints a table.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from record import write_results  # noqa: E402  (benchmarks/record.py, beside this script)

from segmodels import SegmentationModule  # noqa: E402


def write_scene(path: Path, side: int, strip: int = 1024) -> None:
    import rasterio
    from affine import Affine

    profile = {"driver": "GTiff", "height": side, "width": side, "count": 3, "dtype": "uint8", "crs": "EPSG:32633",
               "transform": Affine(0.5, 0, 500000, 0, -0.5, 4100000), "tiled": True, "blockxsize": 512,
               "blockysize": 512, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    rng = np.random.default_rng(0)
    columns = np.arange(side)
    with rasterio.open(path, "w", **profile) as out:
        for top in range(0, side, strip):
            rows = np.arange(top, min(side, top + strip))[:, None]
            shapes = ((np.sin(rows / 97.0) + np.cos(columns[None] / 61.0)) > 0.3).astype(np.uint8) * 120
            for band in range(3):
                noise = rng.integers(0, 60, shapes.shape, dtype=np.uint8)
                out.write(shapes + noise + 20 * band, band + 1, window=rasterio.windows.Window(0, top, side, len(rows)))


def run_predict(model: Path, image: Path, output: Path, window_batch: int, overlap: float, *extra: str) -> dict:
    command = ["/usr/bin/time", "-v", sys.executable, str(ROOT / "predict.py"), f"model={model}", f"input={image}",
               f"output={output}", "tile=512", f"overlap={overlap}", f"window_batch={window_batch}", *extra]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return {"seconds": seconds, "peak_rss_mb": peak_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides", type=int, nargs="+", default=[2048, 8192, 20000])
    parser.add_argument("--window-batch", type=int, default=1)
    parser.add_argument("--overlap", type=float, default=0.25, help="of neighbouring windows (0: abutting)")
    parser.add_argument("--in-memory", type=int, default=0, help="also run stream=never on images up to this side and "
                                                                 "compare the class maps")
    parser.add_argument("--folder", default=None, help="where the generated images go (default: a temporary folder)")
    parser.add_argument("--out", default="benchmarks/results/out_of_core.json")
    args = parser.parse_args()
    import rasterio

    results = []
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        folder = Path(folder)
        torch.manual_seed(0)
        SegmentationModule(backbone="efficientnet_lite0", decoder="unet", num_classes=4,
                           pretrained=False).save_pretrained(str(folder / "model"))
        for side in args.sides:
            image = folder / f"scene_{side}.tif"
            write_scene(image, side)
            row = {"side": side, "megapixels": side * side / 1e6, "window_batch": args.window_batch,
                   "overlap": args.overlap,
                   "streamed": run_predict(folder / "model", image, folder / f"out_{side}", args.window_batch,
                                           args.overlap)}
            row["streamed"]["seconds_per_megapixel"] = row["streamed"]["seconds"] / row["megapixels"]
            with rasterio.open(folder / f"out_{side}" / image.name) as out, rasterio.open(image) as source:
                row["output"] = {"crs": str(out.crs), "same_crs": out.crs == source.crs,
                                 "same_transform": out.transform == source.transform,
                                 "blocks": [list(b) for b in out.block_shapes], "compression": out.compression.value}
                compared = side <= args.in_memory
                streamed = out.read(1) if compared else None
            if compared:
                row["in_memory"] = run_predict(folder / "model", image, folder / f"whole_{side}", args.window_batch,
                                               args.overlap, "stream=never")
                from PIL import Image

                whole = np.asarray(Image.open(folder / f"whole_{side}" / f"scene_{side}.png"))
                row["class_maps_equal"] = bool(np.array_equal(whole, streamed))
            results.append(row)
            print(f"{side:>6}^2: streamed {row['streamed']['peak_rss_mb']:.0f} MB peak, "
                  f"{row['streamed']['seconds_per_megapixel']:.2f} s/Mpx"
                  + (f"; in memory {row['in_memory']['peak_rss_mb']:.0f} MB, maps equal {row['class_maps_equal']}"
                     if compared else ""), flush=True)
            image.unlink()
    write_results(args, results, torch.device("cpu"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
