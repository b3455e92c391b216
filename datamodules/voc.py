"""PASCAL VOC layout: JPEGImages/, SegmentationClass/, ImageSets/Segmentation/<split>.txt."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import lightning as L
import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .checks import check_mask_values, check_sizes
from .masks import read_mask
from .sampling import EpochShuffleSampler, sample_seed
from .transforms import eval_transforms, train_transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SINGLE_CHANNEL_MODES = ("L", "I", "I;16", "F")


def read_image(path: Path, keep_single_channel: bool) -> np.ndarray:
    """(H, W, C) uint8; grayscale, palette and RGBA become RGB unless a single channel is kept.

    OpenCV decodes JPEGs about twice as fast as Pillow here; Pillow reads what OpenCV cannot and keeps
    single-channel modes."""
    if not keep_single_channel:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    with Image.open(path) as image:
        if keep_single_channel and image.mode in SINGLE_CHANNEL_MODES:
            return np.array(image.convert("L"))[..., None]
        return np.array(image.convert("RGB"))


class VOCSegmentationDataset(Dataset):
    """Image/mask pairs named by one split file.

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
        split_dir: str = "ImageSets/Segmentation",
        image_ext: str = ".jpg",
        mask_ext: str = ".png",
        image_dirs: Sequence[str] | None = None,
        mask_value_map: Mapping[int, int] | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        self.seed = 0  # the base of per-sample augmentation seeds (set by the datamodule)
        self.mask_value_map = dict(mask_value_map) if mask_value_map else None
        self.image_dirs = list(image_dirs) if image_dirs else [image_dir]
        self.split_file = self.root / split_dir / f"{split}.txt"
        if ids is None:
            if not self.split_file.is_file():
                raise FileNotFoundError(
                    f"split file {self.split_file} does not exist; check dataset.root ({self.root}) and the split "
                    f"name '{split}' (dataset.train_split / val_split / test_split), or split the masks found "
                    f"with dataset.split_fractions (e.g. '{{train: 0.8, val: 0.2}}')"
                )
            ids = [line.split()[0] for line in self.split_file.read_text().splitlines() if line.strip()]
            if not ids:
                raise ValueError(f"split file {self.split_file} lists no images; add image ids, one per line")
        self.ids = list(ids)
        if not self.ids:
            raise ValueError(f"split '{split}' of {self.root} is empty; give it a larger share in dataset.split_fractions")
        self.images = [[self.root / d / f"{i}{image_ext}" for d in self.image_dirs] for i in self.ids]
        self.masks = [self.root / mask_dir / f"{i}{mask_ext}" for i in self.ids]
        missing = [str(p) for images, mask in zip(self.images, self.masks) for p in [*images, mask] if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"split file {self.split_file} names {len(missing)} missing files, e.g. {missing[:3]}; "
                f"check dataset.image_dir/mask_dir/image_ext/mask_ext or remove those ids from the split"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        stacked = len(self.image_dirs) > 1
        channels = [read_image(path, keep_single_channel=stacked) for path in self.images[index]]
        image = channels[0] if len(channels) == 1 else np.concatenate(channels, axis=-1)
        return image, read_mask(self.masks[index], self.mask_value_map)

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
        return {"image": image, "mask": torch.as_tensor(mask)}  # both uint8: see on_after_batch_transfer


def read_class_names(root: Path) -> list[str] | None:
    """labelme writes ``class_names.txt``, one name per line (``_background_`` first)."""
    path = root / "class_names.txt"
    return [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.is_file() else None


class VOCSegmentationDataModule(L.LightningDataModule):
    """Any folder in VOC layout.

    ``num_classes`` and ``class_names`` may come from the config, from ``class_names.txt`` in the root,
    or both (then they must agree). ``mean``/``std`` are the backbone's: whoever builds the model sets
    them. ``train_transforms`` (a list of albumentations transforms) replaces the built-in
    augmentation; tensor conversion is always appended. Loaders yield uint8 images and masks; Lightning
    calls ``on_after_batch_transfer`` to normalise them on the device (call ``normalize`` yourself in a
    hand-written loop).
    """

    def __init__(
        self,
        root: str,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        crop_size: int = 512,
        scale_range: Sequence[float] = (0.5, 2.0),
        train_transforms: Sequence[Any] | None = None,
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = True,
        ignore_index: int = 255,
        mask_value_map: Mapping[int, int] | None = None,
        check_samples: int | None = 500,
        split_fractions: Mapping[str, float] | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = "test",
        image_dir: str = "JPEGImages",
        image_dirs: Sequence[str] | None = None,
        mask_dir: str = "SegmentationClass",
        split_dir: str = "ImageSets/Segmentation",
        image_ext: str = ".jpg",
        mask_ext: str = ".png",
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.class_names, self.num_classes = self._classes(class_names, num_classes)
        self.mean, self.std = tuple(mean), tuple(std)
        self.crop_size, self.scale_range, self.ignore_index = crop_size, tuple(scale_range), ignore_index
        self.augmentations = list(train_transforms) if train_transforms is not None else None
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.check_samples = check_samples
        self.split_fractions = dict(split_fractions) if split_fractions else None
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.layout = dict(
            image_dir=image_dir, image_dirs=image_dirs, mask_dir=mask_dir, split_dir=split_dir,
            image_ext=image_ext, mask_ext=mask_ext, mask_value_map=mask_value_map,
        )
        self.datasets: dict[str, VOCSegmentationDataset] = {}
        self._normalizers: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _classes(self, class_names: Sequence[str] | None, num_classes: int | None) -> tuple[list[str], int]:
        from_file = read_class_names(self.root) if not class_names else None
        names = list(class_names or from_file or [])
        if names and num_classes is not None and len(names) != num_classes:
            source = f"{self.root / 'class_names.txt'}" if from_file else "dataset.class_names"
            raise ValueError(
                f"{source} lists {len(names)} classes but dataset.num_classes={num_classes}; make them agree "
                f"(or set dataset.num_classes=null to take the count from the names)"
            )
        if not names and num_classes is None:
            raise ValueError(
                f"the number of classes is unknown: set dataset.num_classes or dataset.class_names, or put a "
                f"class_names.txt (one name per line) in {self.root}"
            )
        count = num_classes if num_classes is not None else len(names)
        return names or [f"class_{i}" for i in range(count)], count

    def _transform(self, stage: str):
        if stage != "train":
            return eval_transforms()
        photometric = len(self.mean) == 3  # colour jitter is defined for RGB inputs only
        return train_transforms(self.crop_size, self.ignore_index, self.scale_range, self.augmentations, photometric)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float, with the backbone's mean and std, on the images' device."""
        key = (images.device, self.mean, self.std)
        if key not in self._normalizers:  # built once per device: no host-to-device copy per batch
            mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
            self._normalizers[key] = (1 / (255 * std), mean / std)
        scale, shift = self._normalizers[key]
        return images.float() * scale - shift

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        # loaders ship uint8 images and masks; the float work happens here, on the training device
        return {**batch, "image": self.normalize(batch["image"]), "mask": batch["mask"].long()}

    def split_ids(self, split: str) -> list[str] | None:
        """With ``split_fractions`` (no split files, as labelme exports): a seeded partition of the masks."""
        if not self.split_fractions:
            return None
        if split not in self.split_fractions:
            raise ValueError(f"split '{split}' has no share in dataset.split_fractions {self.split_fractions}")
        mask_dir, ext = self.root / self.layout["mask_dir"], self.layout["mask_ext"]
        ids = sorted(p.name[: -len(ext)] for p in mask_dir.glob(f"*{ext}"))
        random.Random(0).shuffle(ids)
        total, start = sum(self.split_fractions.values()), 0.0
        for name, share in self.split_fractions.items():
            end = start + share / total
            if name == split:
                return ids[round(start * len(ids)) : round(end * len(ids))]
            start = end
        return None

    def dataset(self, stage: str) -> VOCSegmentationDataset:
        if stage not in self.datasets:
            split = self.splits[stage]
            dataset = VOCSegmentationDataset(self.root, split, self._transform(stage), ids=self.split_ids(split), **self.layout)
            check_sizes(dataset.images, dataset.masks)
            check_mask_values(dataset.masks, self.num_classes, self.ignore_index, dataset.mask_value_map, self.check_samples)
            self.datasets[stage] = dataset
        return self.datasets[stage]

    @property
    def in_channels(self) -> int:
        """Channels of one input image, read from the first training sample."""
        for stage in ("train", "val", "test"):
            if self.splits[stage]:
                return self.dataset(stage).read(0)[0].shape[-1]
        raise ValueError("no split configured")

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], None: ["train", "val", "test"]}
        for split in wanted.get(stage, []):
            if self.splits[split]:
                self.dataset(split)

    def _loader(self, stage: str, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = self.dataset(stage)
        sampler = None
        if shuffle:  # albumentations keeps its own RNG, deaf to global seeds: seed it per sample instead
            dataset.seed = int(torch.initial_seed()) % 2**31
            trainer = getattr(self, "trainer", None)
            replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            sampler = EpochShuffleSampler(len(dataset), seed=dataset.seed, num_replicas=replicas, rank=rank)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.val_batch_size, shuffle=False)
