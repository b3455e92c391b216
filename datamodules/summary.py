"""Look at a dataset before training on it: split sizes, image sizes, class frequencies, problems.

    python -m datamodules.summary data/VOCdevkit/VOC2012
    python -m datamodules.summary data/my_labelme_export --mask-dir SegmentationClassPNG --class-weights

``--class-weights`` prints median-frequency weights (Eigen & Fergus: weight_c = median(f) / f_c, with
f_c the share of class c among the pixels of the images where c appears), ready for
``python train.py class_weights=[...]``.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from .checks import check_mask_values, check_sizes, evenly_spaced
from .dataset import VOCSegmentationDataset, read_class_names
from .leakage import leaked_pairs
from .masks import read_mask
from .progress import progress


def median_frequency_weights(pixels: np.ndarray, image_pixels: np.ndarray) -> list[float]:
    """Per-class weights from class pixel counts and the pixel counts of the images holding each class."""
    frequency = np.divide(pixels, image_pixels, out=np.zeros_like(pixels, dtype=float), where=image_pixels > 0)
    median = np.median(frequency[frequency > 0]) if (frequency > 0).any() else 0.0
    return [float(median / f) if f > 0 else 0.0 for f in frequency]


def class_statistics(masks: list[Path], num_classes: int, ignore_index: int, value_map=None, limit: int | None = None) -> dict:
    pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    ignored = total = 0
    for index in progress(evenly_spaced(len(masks), limit), "class statistics", "mask"):
        mask = read_mask(masks[index], value_map)
        counts = np.bincount(mask.ravel(), minlength=256)
        pixels += counts[:num_classes]
        image_pixels += np.where(counts[:num_classes] > 0, mask.size, 0)
        ignored += int(counts[ignore_index]) if ignore_index < 256 else 0
        total += mask.size
    return {"pixels": pixels, "image_pixels": image_pixels, "ignored": ignored, "total": total}


def summarize(root: Path, args: argparse.Namespace) -> dict:
    class_names = read_class_names(root)
    num_classes = args.num_classes or (len(class_names) if class_names else None)
    report: dict = {"root": str(root), "splits": {}, "problems": [], "notes": []}
    layout = dict(image_dir=args.image_dir, mask_dir=args.mask_dir, split_dir=args.split_dir,
                  image_ext=args.image_ext, mask_ext=args.mask_ext)
    datasets = {}
    splits = args.splits or ["train", "val", "test"]
    for split in splits:
        if args.splits is None and split == "test" and not (root / args.split_dir / "test.txt").is_file():
            # PASCAL VOC 2012 has train/val/trainval only: a split nobody asked for is no problem
            missing = root / args.split_dir / "test.txt"
            report["notes"].append(f"no test split ({missing}); set dataset.test_split=val to test on val")
            continue
        try:
            datasets[split] = VOCSegmentationDataset(root, split, **layout)
        except (FileNotFoundError, ValueError) as error:
            report["problems"].append(str(error))
    for split, dataset in datasets.items():
        sizes = Counter()
        for paths in progress(dataset.images, f"{split} sizes", "image"):
            with Image.open(paths[0]) as image:
                sizes[image.size] += 1
        widths, heights = [w for w, _ in sizes.elements()], [h for _, h in sizes.elements()]
        report["splits"][split] = {
            "images": len(dataset),
            "sizes": {"min": [min(widths), min(heights)], "max": [max(widths), max(heights)],
                      "most_common": [list(s) + [n] for s, n in sizes.most_common(3)]},
        }
        try:
            check_sizes(dataset.images, dataset.masks)
        except ValueError as error:
            report["problems"].append(f"{split}: {error}")
    for split, train_file, twin in leaked_pairs({name: d.images for name, d in datasets.items()}):
        report["problems"].append(f"{split}: {twin.name} is byte-identical to train's {train_file.name} (leakage: "
                                  f"remove one of the pair from its split file)")
    first = datasets.get(splits[0])
    if first is not None:
        if num_classes is None:  # no class_names.txt: the largest class value seen
            seen = set().union(*(np.unique(read_mask(first.masks[i])).tolist() for i in evenly_spaced(len(first), 200)))
            num_classes = max(seen - {args.ignore_index}, default=0) + 1
        names = class_names or [f"class_{i}" for i in range(num_classes)]
        try:
            check_mask_values(first.masks, num_classes, args.ignore_index, limit=args.sample)
        except ValueError as error:
            report["problems"].append(f"{splits[0]}: {error}")
        stats = class_statistics(first.masks, num_classes, args.ignore_index, limit=args.sample)
        labelled = max(1, stats["total"] - stats["ignored"])
        report["class_frequency"] = {name: float(p / labelled) for name, p in zip(names, stats["pixels"])}
        report["ignored_fraction"] = stats["ignored"] / max(1, stats["total"])
        if args.class_weights:
            report["class_weights"] = median_frequency_weights(stats["pixels"], stats["image_pixels"])
    return report


def print_report(report: dict) -> None:
    print(f"dataset {report['root']}")
    for split, info in report["splits"].items():
        sizes = info["sizes"]
        common = ", ".join(f"{w}x{h} ({n})" for w, h, n in sizes["most_common"])
        print(f"  {split:<10} {info['images']:>6} images; sizes {sizes['min'][0]}x{sizes['min'][1]} .. "
              f"{sizes['max'][0]}x{sizes['max'][1]}; most common: {common}")
    if "class_frequency" in report:
        print(f"class pixel frequency (share of labelled pixels; {100 * report['ignored_fraction']:.1f}% ignored):")
        for name, share in report["class_frequency"].items():
            print(f"  {name:<16} {100 * share:6.2f}%")
    if "class_weights" in report:
        print("median-frequency class weights:")
        print("  class_weights=[" + ",".join(f"{w:.4f}" for w in report["class_weights"]) + "]")
    for note in report.get("notes", []):
        print(f"note: {note}")
    print("problems:" if report["problems"] else "problems: none found")
    for problem in report["problems"]:
        print(f"  - {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules.summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--splits", nargs="+", default=None,
                        help="splits to read (default: train, val, and test when it exists)")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--ignore-index", type=int, default=255)
    parser.add_argument("--image-dir", default="JPEGImages")
    parser.add_argument("--mask-dir", default="SegmentationClass")
    parser.add_argument("--split-dir", default="ImageSets/Segmentation")
    parser.add_argument("--image-ext", default=".jpg")
    parser.add_argument("--mask-ext", default=".png")
    parser.add_argument("--sample", type=int, default=None, help="masks read for values and frequencies (default all)")
    parser.add_argument("--class-weights", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = summarize(args.root, args)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
