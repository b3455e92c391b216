"""Look at a dataset before training on it: split sizes, image sizes, class frequencies, problems.

    python -m datamodules.summary data/VOCdevkit/VOC2012
    python -m datamodules.summary data/my_labelme_export --mask-dir SegmentationClassPNG --class-weights

``--class-weights`` prints median-frequency weights (Eigen & Fergus: weight_c = median(f) / f_c, with
f_c the share of class c among the pixels of the images where c appears), ready for
``python train.py class_weights=[...]``.

``--channel-stats`` reads the train split's images once, streaming, and prints each channel's mean and standard
deviation, ready for ``python train.py dataset.mean=[...] dataset.std=[...]``: for 16-bit, float or multi-band data,
where ImageNet's statistics mean nothing. They are in the units every normalisation here uses, x / 255, whatever the
bit depth (a 16-bit channel's mean may be up to 257). The 0.5 and 99.5 percentiles (for clipping outliers) come from
a seeded sample of up to a million pixels per channel.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from .annotations import FORMATS, rasterise_coco, rasterise_labelme
from .checks import check_mask_values, check_sizes, evenly_spaced
from .dataset import VOCSegmentationDataset, read_class_names
from .images import image_size
from .leakage import leaked_pairs
from .masks import colour_table, read_class_colors, read_mask
from .progress import progress


def median_frequency_weights(pixels: np.ndarray, image_pixels: np.ndarray) -> list[float]:
    """Per-class weights from class pixel counts and the pixel counts of the images holding each class."""
    frequency = np.divide(pixels, image_pixels, out=np.zeros_like(pixels, dtype=float), where=image_pixels > 0)
    median = np.median(frequency[frequency > 0]) if (frequency > 0).any() else 0.0
    return [float(median / f) if f > 0 else 0.0 for f in frequency]


def class_statistics(masks: list[Path], num_classes: int, ignore_index: int, value_map=None, limit: int | None = None,
                     reader=read_mask) -> dict:
    pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    ignored = total = 0
    for index in progress(evenly_spaced(len(masks), limit), "class statistics", "mask"):
        mask = reader(masks[index], value_map)
        counts = np.bincount(mask.ravel(), minlength=max(256, num_classes, ignore_index + 1))
        pixels += counts[:num_classes]
        image_pixels += np.where(counts[:num_classes] > 0, mask.size, 0)
        ignored += int(counts[ignore_index])
        total += mask.size
    return {"pixels": pixels, "image_pixels": image_pixels, "ignored": ignored, "total": total}


def channel_statistics(dataset: VOCSegmentationDataset, limit: int | None = None, sample: int = 1_000_000) -> dict:
    """Per-channel mean and std of x / 255 over the images (float64 sums, one image in memory at a time), and the
    0.5 / 99.5 percentiles of a seeded pixel sample."""
    rng = np.random.default_rng(0)
    indices = evenly_spaced(len(dataset), limit)
    share = max(1, sample // max(1, len(indices)))  # pixels sampled per image
    total = squares = None
    count, kept = 0, []
    for index in progress(indices, "channel statistics", "image"):
        image = dataset.read(index)[0]
        image = image.astype(np.float64).reshape(-1, image.shape[-1]) / 255
        total = image.sum(0) if total is None else total + image.sum(0)
        squares = (image ** 2).sum(0) if squares is None else squares + (image ** 2).sum(0)
        count += len(image)
        kept.append(image[rng.choice(len(image), min(share, len(image)), replace=False)])
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    pixels = np.concatenate(kept)
    return {"mean": mean.tolist(), "std": std.tolist(), "images": len(indices), "pixels": count,
            "percentile_0.5": np.percentile(pixels, 0.5, axis=0).tolist(),
            "percentile_99.5": np.percentile(pixels, 99.5, axis=0).tolist()}


def summarize(root: Path, args: argparse.Namespace) -> dict:
    colour_file = read_class_colors(root)  # RGB masks in the dataset's own colours (class_colors.txt, labelmap.txt)
    class_names = read_class_names(root) or (colour_file[0] if colour_file else None)
    num_classes = args.num_classes or (len(class_names) if class_names else None)
    report: dict = {"root": str(root), "splits": {}, "roles": {"train": "train", "val": "val", "test": "test"},
                    "problems": [], "notes": []}
    layout = dict(image_dir=args.image_dir, mask_dir=args.mask_dir, split_dir=args.split_dir,
                  image_ext=args.image_ext, mask_ext=args.mask_ext,
                  colours=colour_table(colour_file[1], colour_file[0]) if colour_file else None, colour_names=class_names)
    if getattr(args, "annotations", None):  # COCO or labelme JSON: drawn once, as train.py draws them
        cache_root = root / ".segmodels_masks"
        if args.annotations == "coco":
            folder, names = rasterise_coco(root / (args.annotation_file or ""), cache_root, args.ignore_index)
        else:
            folder, names = rasterise_labelme(root / args.image_dir, cache_root, class_names, args.ignore_index)
        layout.update(mask_dir=str(folder.resolve()), mask_ext=".png")
        class_names = class_names or names
        num_classes = args.num_classes or len(class_names)
    datasets = {}
    splits = args.splits or ["train", "val", "test"]
    if args.splits is None and args.split_dir and not (root / args.split_dir / "train.txt").is_file():
        # a labelme/CVAT export or a plain folder of pairs: every mask, one group; train.py splits it by fractions
        mask_dir = Path(root / layout["mask_dir"])
        ids = sorted(p.name[: -len(layout["mask_ext"])] for p in mask_dir.glob(f"*{layout['mask_ext']}"))
        report["roles"] = {"train": "split_fractions", "val": "split_fractions", "test": "split_fractions"}
        report["notes"].append(f"no split files in {root / args.split_dir}: {len(ids)} masks read as one group 'all'; "
                               f"train.py needs dataset.split_fractions='{{train: 0.7, val: 0.15, test: 0.15}}' (a seeded "
                               f"partition it writes to <run>/splits)")
        try:
            datasets["all"] = VOCSegmentationDataset(root, "all", ids=ids, **{**layout, "split_dir": None})
        except (FileNotFoundError, ValueError) as error:
            report["problems"].append(str(error))
        splits = []
    for split in splits:
        missing = root / args.split_dir / "test.txt" if args.split_dir else root / args.image_dir.format(split="test")
        if args.splits is None and split == "test" and not missing.exists():
            # PASCAL VOC 2012 has train/val/trainval only: a split nobody asked for is no problem, but the test
            # figure then comes from the images checkpoints are chosen on, and the reader must know
            report["roles"]["test"] = "val"
            report["notes"].append(f"no test split ({missing}): train.py's test figure will be on the validation split, "
                                   f"the one best.ckpt is chosen on, so optimistic; add test.txt (or a test share in "
                                   f"dataset.split_fractions) for a held-out figure")
            continue
        try:
            datasets[split] = VOCSegmentationDataset(root, split, **layout)
        except (FileNotFoundError, ValueError) as error:
            report["problems"].append(str(error))
    for split, dataset in datasets.items():
        sizes = Counter()
        for paths in progress(dataset.images, f"{split} sizes", "image"):
            sizes[image_size(paths[0])] += 1
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
    first = next(iter(datasets.values()), None) if not splits else datasets.get(splits[0])
    first_name = next(iter(datasets), "all") if not splits else splits[0]
    if first is not None:
        if num_classes is None:  # no class_names.txt: the largest class value seen
            seen = set().union(*(np.unique(first.mask_reader(first.masks[i])).tolist()
                                 for i in evenly_spaced(len(first), 200)))
            num_classes = max(seen - {args.ignore_index}, default=0) + 1
        names = class_names or [f"class_{i}" for i in range(num_classes)]
        try:
            check_mask_values(first.masks, num_classes, args.ignore_index, limit=args.sample, reader=first.mask_reader)
        except ValueError as error:
            report["problems"].append(f"{first_name}: {error}")
        stats = class_statistics(first.masks, num_classes, args.ignore_index, limit=args.sample, reader=first.mask_reader)
        labelled = max(1, stats["total"] - stats["ignored"])
        report["class_frequency"] = {name: float(p / labelled) for name, p in zip(names, stats["pixels"])}
        report["ignored_fraction"] = stats["ignored"] / max(1, stats["total"])
        if args.class_weights:
            report["class_weights"] = median_frequency_weights(stats["pixels"], stats["image_pixels"])
        if args.channel_stats:
            report["channel_stats"] = channel_statistics(first, args.sample)
    return report


def splits_word(report: dict) -> str:
    return f"the {next(iter(report['splits']), 'first')} split"


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
    if "channel_stats" in report:
        stats = report["channel_stats"]
        print(f"channel statistics of {splits_word(report)} ({stats['images']} images, {stats['pixels']} pixels; "
              f"units of x / 255):")
        print("  percentile 0.5:  [" + ",".join(f"{v:.4g}" for v in stats["percentile_0.5"]) + "]")
        print("  percentile 99.5: [" + ",".join(f"{v:.4g}" for v in stats["percentile_99.5"]) + "]")
        print("  dataset.mean=[" + ",".join(f"{v:.6g}" for v in stats["mean"]) + "] dataset.std=["
              + ",".join(f"{v:.6g}" for v in stats["std"]) + "]")
    if "roles" in report:
        print("roles: " + ", ".join(f"{role} reads {split}" for role, split in report["roles"].items()))
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
    parser.add_argument("--split-dir", default="ImageSets/Segmentation",
                        help="'none': a folder per split ({split} in --image-dir / --mask-dir), as ADE20K or Cityscapes")
    parser.add_argument("--image-ext", default=".jpg")
    parser.add_argument("--mask-ext", default=".png")
    parser.add_argument("--sample", type=int, default=None, help="masks read for values and frequencies (default all)")
    parser.add_argument("--class-weights", action="store_true")
    parser.add_argument("--channel-stats", action="store_true",
                        help="per-channel mean and std of the first split's images (dataset.mean/std to pass)")
    parser.add_argument("--annotations", choices=FORMATS, help="masks drawn from COCO or labelme JSON (dataset.annotations)")
    parser.add_argument("--annotation-file", help="--annotations coco: the COCO JSON, relative to the root")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    args.split_dir = None if args.split_dir.lower() == "none" else args.split_dir
    report = summarize(args.root, args)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
