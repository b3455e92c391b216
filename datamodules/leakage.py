"""The same image in train and in val or test inflates every score: find such pairs by content, not by name.

A file's identity is the SHA-256 of its bytes (the image file as stored: the same photo saved twice under two
ids is one image). Hashing reads every file once; ``benchmarks/leakage_hash.py`` times it on 10,000 VOC-sized
JPEGs (docs: Your data).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

from .progress import progress


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def leaked_pairs(splits: Mapping[str, Sequence[Sequence[Path]]], train: str = "train") -> list[tuple[str, Path, Path]]:
    """(split, train file, that split's file) for every image of a val or test split whose content is also in the
    train split; ``splits`` maps split names to each sample's image files (one per image folder)."""
    if train not in splits:
        return []
    seen: dict[tuple[str, ...], Path] = {}
    for files in progress(splits[train], desc="hash train images", unit="image"):
        seen.setdefault(tuple(content_hash(p) for p in files), files[0])
    found = []
    for name, samples in splits.items():
        if name == train:
            continue
        for files in progress(samples, desc=f"hash {name} images", unit="image"):
            twin = seen.get(tuple(content_hash(p) for p in files))
            if twin is not None:
                found.append((name, twin, files[0]))
    return found


def check_leakage(splits: Mapping[str, Sequence[Sequence[Path]]]) -> None:
    """Refuse a dataset whose val or test split holds an image that train holds too, naming the pairs."""
    pairs = leaked_pairs(splits)
    if pairs:
        by_split: dict[str, list[str]] = defaultdict(list)
        for name, twin, file in pairs:
            by_split[name].append(f"{file.name} = {twin.name}")
        listing = "; ".join(f"{name}: {len(items)} ({', '.join(items[:3])}{' ...' if len(items) > 3 else ''})"
                            for name, items in by_split.items())
        raise ValueError(
            f"{len(pairs)} images of val/test are byte-identical to train images ({listing}), so every score on them "
            f"would be inflated. Remove one of each pair from its split file, or, if the duplicates are intended, "
            f"set dataset.check_leakage=false")
