"""Backbone features on disk, so a frozen-backbone run computes them once (DINOv2-style linear probes, decoder
comparisons on one backbone, the frozen rows of a freeze study).

A cache is a folder of memory-mapped ``.npy`` shards, one per pyramid level the decoder reads and one for the
masks, each holding ``views x images`` rows (float16 by default, float32 for exactness). It is named by a key over
everything that changes the features (``cache_key``), so a changed backbone, weight, stride, crop, transform, view
count or dataset builds a new one. ``progress.json`` counts the rows written and ``complete.json`` is written last:
a cache killed while writing is found incomplete, finished from where it stopped, and never read before.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

DTYPES = {"float16": np.float16, "float32": np.float32}


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, shapes and values): the weights the features come from."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class CacheLayout:
    """What one cache holds: ``rows`` = views x images, and the shape of each row's levels and mask."""

    views: int
    images: int
    levels: dict[int, list[int]]  # level index -> (channels, height, width)
    mask: list[int]  # (height, width)
    dtype: str = "float16"

    @property
    def rows(self) -> int:
        return self.views * self.images

    def bytes(self) -> int:
        item = np.dtype(DTYPES[self.dtype]).itemsize
        return self.rows * (sum(int(np.prod(shape)) for shape in self.levels.values()) * item + int(np.prod(self.mask)))


class FeatureCache:
    """One cache folder: ``create`` or reopen it, ``write`` rows, ``finish``; ``read`` rows once complete."""

    def __init__(self, folder: Path, layout: CacheLayout, key_parts: dict[str, Any]) -> None:
        self.folder, self.layout, self.key_parts = Path(folder), layout, key_parts

    @classmethod
    def at(cls, root: str | Path, layout: CacheLayout, key_parts: dict[str, Any]) -> "FeatureCache":
        return cls(Path(root) / cache_key({**key_parts, "layout": asdict(layout)}), layout, key_parts)

    @property
    def complete(self) -> bool:
        return (self.folder / "complete.json").is_file()

    def written(self) -> int:
        """Rows already written (0 for a new cache); a cache killed while writing resumes here."""
        progress = self.folder / "progress.json"
        return json.loads(progress.read_text())["written"] if progress.is_file() else 0

    def _shard(self, name: str, shape: tuple[int, ...], dtype, mode: str) -> np.ndarray:
        path = self.folder / f"{name}.npy"
        if mode == "w+" and path.is_file():
            mode = "r+"
        return np.lib.format.open_memmap(path, mode=mode, dtype=dtype, shape=shape if mode == "w+" else None)

    def check_space(self, option: str = "backbone.cache_dir") -> int:
        """The bytes this cache takes; refuses, naming ``option``, when the disk holding it lacks them."""
        needed = self.layout.bytes()
        self.folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.folder).free
        if free < needed - self._on_disk():
            raise OSError(f"the feature cache needs {needed / 2**30:.2f} GiB at {self.folder} but the disk has "
                          f"{free / 2**30:.2f} GiB free; point {option}=<folder> at a larger disk, lower "
                          f"backbone.cache_views, or keep float16 (backbone.cache_dtype)")
        return needed

    def _on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*.npy"))

    def open_for_writing(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "key.json").write_text(json.dumps({**self.key_parts, "layout": asdict(self.layout)}, indent=2,
                                                         default=str))
        dtype = DTYPES[self.layout.dtype]
        self.levels = {i: self._shard(f"level{i}", (self.layout.rows, *shape), dtype, "w+")
                       for i, shape in self.layout.levels.items()}
        self.masks = self._shard("masks", (self.layout.rows, *self.layout.mask), np.uint8, "w+")

    def write(self, start: int, levels: dict[int, np.ndarray], masks: np.ndarray) -> None:
        """Rows ``start`` .. ``start + len(masks)``, then the progress record (flushed first, so it never runs ahead)."""
        stop = start + len(masks)
        for i, values in levels.items():
            self.levels[i][start:stop] = values
        self.masks[start:stop] = masks
        for shard in (*self.levels.values(), self.masks):
            shard.flush()
        (self.folder / "progress.json").write_text(json.dumps({"written": stop}))

    def finish(self) -> None:
        (self.folder / "complete.json").write_text(json.dumps({"rows": self.layout.rows}))

    def open_for_reading(self) -> None:
        if not self.complete:
            raise RuntimeError(f"feature cache {self.folder} is incomplete ({self.written()} of {self.layout.rows} rows); "
                               f"it is finished before it is read")
        self.levels = {i: np.load(self.folder / f"level{i}.npy", mmap_mode="r") for i in self.layout.levels}
        self.masks = np.load(self.folder / "masks.npy", mmap_mode="r")

    def read(self, row: int) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        return ({i: torch.from_numpy(np.array(shard[row])) for i, shard in self.levels.items()},
                torch.from_numpy(np.array(self.masks[row])))
