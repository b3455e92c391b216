"""Annotation files as masks: COCO-format JSON (polygons and RLE) and labelme JSON polygons, rasterised once.

A labelling tool's annotation file becomes a folder of index PNGs (8-bit, or 16-bit past 255 classes) in a cache
keyed by the SHA-256 of the annotation bytes, so the files are drawn once, not every epoch, and an edited file makes a
new cache. Everything downstream (checks, summary, training) reads those PNGs as any mask.

Overlaps are resolved by one documented rule each, both what the tools' own exporters do:
- COCO: annotations are painted largest first, so a smaller object on a larger one stays visible (crowd regions too);
  category ids map to classes 1..K in increasing id order, 0 is background.
- labelme: shapes are painted in file order, a later shape over an earlier one (labelme2voc's rule); classes come
  from ``class_names.txt`` when given (``_background_`` first), else background then the labels in sorted order;
  ``__ignore__`` paints the ignore value.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

FORMATS = ("coco", "labelme")


def digest(paths: Sequence[Path]) -> str:
    """SHA-256 over the files' names and bytes, in order (the cache key)."""
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(path.name.encode())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()[:16]


def save_mask(mask: np.ndarray, path: Path) -> None:
    """An index PNG: 8-bit when every value fits, else 16-bit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) if mask.max(initial=0) < 256 else mask.astype(np.uint16)).save(path)


def finished(cache: Path) -> bool:
    return (cache / "complete").is_file()


def rasterise_coco(annotation_file: Path, cache_root: Path, ignore_index: int = 255) -> tuple[Path, list[str]]:
    """``annotation_file`` (COCO JSON) as ``<cache>/<image file stem>.png`` masks; returns the folder and the class
    names (background, then the categories by id)."""
    from pycocotools import mask as coco_mask  # the coco extra; imported where it is needed

    if not annotation_file.is_file():
        raise FileNotFoundError(f"COCO annotation file {annotation_file} does not exist; check dataset.annotation_file")
    try:
        data = json.loads(annotation_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{annotation_file} is not valid JSON ({error}); export the COCO file again") from error
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise ValueError(f"{annotation_file} lacks {missing}: not a COCO-format annotation file (images, annotations, "
                         f"categories)")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    classes = {c["id"]: index + 1 for index, c in enumerate(categories)}
    names = ["background", *[str(c["name"]) for c in categories]]
    cache = cache_root / f"coco-{digest([annotation_file])}"
    if finished(cache):
        return cache, names
    by_image: dict[int, list[dict]] = {}
    for annotation in data["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    for image in data["images"]:
        height, width = image["height"], image["width"]
        mask = np.zeros((height, width), dtype=np.uint16)
        for annotation in sorted(by_image.get(image["id"], []), key=lambda a: -a.get("area", 0)):
            if annotation["category_id"] not in classes:
                raise ValueError(f"{annotation_file}: annotation {annotation.get('id')} names category "
                                 f"{annotation['category_id']}, which 'categories' does not list")
            segmentation = annotation["segmentation"]
            if isinstance(segmentation, list):  # polygons
                rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
            elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
                rle = coco_mask.frPyObjects(segmentation, height, width)
            else:
                rle = segmentation
            mask[coco_mask.decode(rle).astype(bool)] = classes[annotation["category_id"]]
        save_mask(mask, cache / f"{Path(image['file_name']).stem}.png")
    (cache / "complete").write_text(str(annotation_file))
    return cache, names


def labelme_classes(files: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    if names:
        return list(names)
    labels = sorted({shape["label"] for path in files for shape in json.loads(path.read_text()).get("shapes", [])}
                    - {"_background_", "__ignore__"})
    return ["_background_", *labels]


def rasterise_labelme(folder: Path, cache_root: Path, names: Sequence[str] | None = None,
                      ignore_index: int = 255) -> tuple[Path, list[str]]:
    """Every ``<stem>.json`` labelme wrote in ``folder`` as ``<cache>/<stem>.png``; returns the folder and the class
    names."""
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no labelme .json files in {folder}; check dataset.root and dataset.image_dir")
    classes = labelme_classes(files, names)
    index = {name: i for i, name in enumerate(classes)}
    cache = cache_root / f"labelme-{digest(files)}"
    if finished(cache):
        return cache, classes
    for path in files:
        record = json.loads(path.read_text())
        height, width = record.get("imageHeight"), record.get("imageWidth")
        if not height or not width:
            raise ValueError(f"{path} gives no imageHeight/imageWidth; save it again with labelme")
        canvas = Image.new("I", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for shape in record.get("shapes", []):
            label = shape["label"]
            if label == "__ignore__":
                value = ignore_index
            elif label in index:
                value = index[label]
            else:
                raise ValueError(f"{path}: label '{label}' is not among the classes {classes}; add it to "
                                 f"class_names.txt or rename the shape")
            points = [tuple(p) for p in shape["points"]]
            kind = shape.get("shape_type") or "polygon"
            if kind == "polygon" and len(points) >= 3:
                draw.polygon(points, fill=value, outline=value)
            elif kind == "rectangle" and len(points) == 2:
                draw.rectangle([min(points[0][0], points[1][0]), min(points[0][1], points[1][1]),
                                max(points[0][0], points[1][0]), max(points[0][1], points[1][1])], fill=value)
            elif kind == "circle" and len(points) == 2:
                (cx, cy), (px, py) = points
                radius = ((cx - px) ** 2 + (cy - py) ** 2) ** 0.5
                draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=value)
            else:
                raise ValueError(f"{path}: a '{kind}' shape of {len(points)} points cannot be painted as a region "
                                 f"(polygons, rectangles and circles can); delete it or redraw it as a polygon")
        save_mask(np.array(canvas, dtype=np.int64).astype(np.uint16), cache / f"{path.stem}.png")
    (cache / "complete").write_text(str(folder))
    return cache, classes
