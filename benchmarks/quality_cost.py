"""Quality against cost: each run of a sweep as test mIoU against forward GFLOPs and parameters, one point a decoder.

    python train.py -m decoder=unet,att_unet,segnet,fcn8s,fcn16s,fcn32s,deeplabv3,deeplabv3plus,fpn,upernet,segformer,\
pspnet,linear hydra.sweep.dir=multirun/decoders
    python benchmarks/quality_cost.py multirun/decoders --out docs/images/quality_cost.png

GFLOPs are counted at ``--size`` (512) with ``--classes`` (21) on the meta device (model_cost.py's ``cost``), so the
cost axis is the one a real dataset pays, while the quality axis is what the sweep measured. Writes the picture, a
JSON beside it and a markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_cost import cost  # noqa: E402


def runs(sweep: Path) -> list[dict]:
    """One row per finished job: backbone, decoder, output stride, test and best validation mIoU, parameters."""
    rows = []
    for job in sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file()):
        config = yaml.safe_load((job / "config.yaml").read_text())
        metrics = json.loads((job / "metrics.json").read_text())
        rows.append({"job": job.name, "backbone": config["backbone"]["name"], "decoder": config["decoder"]["name"],
                     "output_stride": config["backbone"].get("output_stride", 32),
                     "test_miou": 100 * metrics["test/mIoU"], "val_miou": 100 * metrics.get("best/val/mIoU", float("nan")),
                     "parameters": metrics["parameters"]})
    if not rows:
        raise SystemExit(f"{sweep}: no job folder with metrics.json; give the folder of a finished sweep")
    return rows


def plot(rows: list[dict], path: Path, size: int, classes: int) -> None:
    figure = Figure(figsize=(11, 4.6))
    axes = figure.subplots(1, 2)
    for axis, key, label in ((axes[0], "gflops", f"forward GFLOPs at {size} x {size}, {classes} classes (log)"),
                             (axes[1], "parameters", "parameters, millions (log)")):
        placed: list[float] = []
        for row in sorted(rows, key=lambda r: r["test_miou"]):
            x = row[key] / (1e6 if key == "parameters" else 1)
            axis.scatter(x, row["test_miou"], color="tab:blue")
            # a label within 2 points of one already placed goes below its point, so two never print over each other
            below = any(abs(row["test_miou"] - y) < 2 for y in placed)
            placed.append(row["test_miou"])
            axis.annotate(row["decoder"], (x, row["test_miou"]), textcoords="offset points",
                          xytext=(4, -10 if below else 3), fontsize=8)
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ScalarFormatter())  # 3, 10, 30 rather than 3 x 10^0
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel(label)
        axis.set_ylabel("test mIoU (%)")
        axis.grid(True, alpha=0.3)
    backbone = rows[0]["backbone"]
    figure.suptitle(f"quality against cost: every decoder on {backbone}, the demo data (one seed each)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--out", type=Path, default=Path("quality_cost.png"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--classes", type=int, default=21)
    args = parser.parse_args()
    rows = runs(args.sweep)
    for row in rows:
        row["gflops"] = cost(row["backbone"], row["decoder"], args.size, args.classes)["gflops"]
    rows.sort(key=lambda r: -r["test_miou"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out, args.size, args.classes)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    print("| decoder | test mIoU (%) | best val mIoU (%) | parameters | GFLOPs at 512 (21 classes) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| `{row['decoder']}` | {row['test_miou']:.2f} | {row['val_miou']:.2f} | {row['parameters'] / 1e6:.1f} M | "
              f"{row['gflops']:.0f} |")


if __name__ == "__main__":
    main()
