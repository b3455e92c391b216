"""One split of a folder in PASCAL VOC layout: image/mask pairs named by a split file."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .images import read_image
from .masks import read_mask
from .sampling import sample_seed


class VOCSegmentationDataset(Dataset):
    """Image/mask pairs: images in one tree, masks in a parallel tree, matched by name with suffixes.

    The image of id ``i`` is ``root/image_dir/<i><image_ext>`` and its mask ``root/mask_dir/<i><mask_ext>``; ``{split}``
    in either folder is the split's name. The ids are those of the split file ``root/split_dir/<split>.txt`` (PASCAL
    VOC), or, with ``split_dir=None``, every image under the split's image folder, subfolders included, the id being
    its path there less ``image_ext`` (ADE20K's ``images/training/*.jpg``, Cityscapes'
    ``leftImg8bit/train/<city>/*_leftImg8bit.png``, COCO-Stuff's ``images/train2017/*.jpg``): the published layouts
    are configurations of this one reader (``conf/dataset/``). ``prepare`` names the step that makes a missing folder
    or file, for the error.

    ``image_dirs`` with several folders stacks their images as channels of one input (a grayscale
    image gives one channel, any other three), e.g. two single-channel modalities for a 2-channel model.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable | None = None,
        image_dir: str = "JPEGImages",
        mask_dir: str = "SegmentationClass",
        split_dir: str | None = "ImageSets/Segmentation",
        image_ext: str = ".jpg",
        mask_ext: str = ".png",
        image_dirs: Sequence[str] | None = None,
        mask_value_map: Mapping[int, int] | None = None,
        ids: Sequence[str] | None = None,
        prepare: str | None = None,
        colours: Mapping[int, int] | None = None,
        colour_names: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        # RGB masks: colour code -> class (``masks.colour_table``), with the class names for errors
        self.mask_reader = partial(read_mask, colours=colours, names=colour_names)
        self.transform = transform
        self.seed = 0  # the base of per-sample augmentation seeds (set by the datamodule)
        self.mask_value_map = dict(mask_value_map) if mask_value_map else None
        self.image_dirs = [d.format(split=split) for d in (list(image_dirs) if image_dirs else [image_dir])]
        mask_dir = mask_dir.format(split=split)
        hint = f"; {prepare}" if prepare else ""
        self.split_file = self.root / split_dir / f"{split}.txt" if split_dir else None
        if ids is None and self.split_file is None:
            ids = scan_ids(self.root / self.image_dirs[0], image_ext, hint)
        if ids is None:
            if not self.split_file.is_file():
                raise FileNotFoundError(
                    f"split file {self.split_file} does not exist; check dataset.root ({self.root}) and the split "
                    f"name '{split}' (dataset.train_split / val_split / test_split), or split the masks found "
                    f"with dataset.split_fractions (e.g. '{{train: 0.8, val: 0.2}}')"
                )
            ids = [line.split()[0] for line in read_text(self.split_file, "split file", "one image id per line")
                   .splitlines() if line.strip()]
            if not ids:
                raise ValueError(f"split file {self.split_file} lists no images; add image ids, one per line")
        self.ids = list(ids)
        if not self.ids:
            raise ValueError(f"split '{split}' of {self.root} is empty; give it a larger share in dataset.split_fractions")
        self.images = [[self.root / d / f"{i}{image_ext}" for d in self.image_dirs] for i in self.ids]
        self.masks = [self.root / mask_dir / f"{i}{mask_ext}" for i in self.ids]
        missing = [str(p) for images, mask in zip(self.images, self.masks) for p in [*images, mask] if not p.is_file()]
        if missing:
            source = f"split file {self.split_file}" if self.split_file else f"split '{split}' of {self.root}"
            raise FileNotFoundError(
                f"{source} names {len(missing)} missing files, e.g. {missing[:3]}; "
                f"check dataset.image_dir/mask_dir/image_ext/mask_ext or remove those ids from the split{hint}"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        stacked = len(self.image_dirs) > 1
        channels = [read_image(path, keep_single_channel=stacked) for path in self.images[index]]
        image = channels[0] if len(channels) == 1 else np.concatenate(channels, axis=-1)
        return image, self.mask_reader(self.masks[index], self.mask_value_map)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """``key`` is an index, or ``(epoch, index)`` from EpochShuffleSampler: then the augmentation is
        seeded from (seed, epoch, index), the same in any worker and after a resume."""
        if isinstance(key, tuple):
            epoch, index = key
            if hasattr(self.transform, "set_random_seed"):
                self.transform.set_random_seed(sample_seed(self.seed, epoch, index))
        else:
            index = key
        image, mask = self.read(index)
        if self.transform is not None:
            sample = self.transform(image=image, mask=mask)
            image, mask = sample["image"], sample["mask"]
        else:
            image, mask = torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask)
        return {"image": image, "mask": torch.as_tensor(mask)}  # uint8 (16-bit masks: uint16): see on_after_batch_transfer


def scan_ids(folder: Path, suffix: str, hint: str = "") -> list[str]:
    """Every file under ``folder`` ending in ``suffix``, as its path there less the suffix, sorted."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist; check dataset.root and dataset.image_dir{hint}")
    ids = sorted(p.relative_to(folder).as_posix()[: -len(suffix)] for p in folder.rglob(f"*{suffix}") if p.is_file())
    if not ids:
        raise FileNotFoundError(f"image folder {folder} holds no file ending in '{suffix}'; check dataset.image_ext"
                                f"{hint}")
    return ids


def read_class_names(root: Path) -> list[str] | None:
    """labelme writes ``class_names.txt``, one name per line (``_background_`` first)."""
    path = root / "class_names.txt"
    if not path.is_file():
        return None
    return [line.strip() for line in read_text(path, "class names file", "one class name per line, background first")
            .splitlines() if line.strip()] or None


def read_text(path: Path, what: str, expected: str) -> str:
    """A small text file, or an error naming it when it is not text (a binary or a wrongly encoded file)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {path} is not UTF-8 text ({error.reason} at byte {error.start}); it should hold "
                         f"{expected}. Save it again as plain text") from error
