"""PASCAL VOC layout: JPEGImages/, SegmentationClass/, ImageSets/Segmentation/<split>.txt."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .transforms import eval_transforms, train_transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VOCSegmentationDataset(Dataset):
    """Image/mask pairs named by one split file; masks are palette or grayscale PNGs of class indices."""

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
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        split_file = self.root / split_dir / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(
                f"split file {split_file} does not exist; check dataset.root ({self.root}) and the split "
                f"name '{split}' (dataset.train_split / val_split / test_split)"
            )
        self.ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise ValueError(f"split file {split_file} lists no images; add image ids, one per line")
        self.images = [self.root / image_dir / f"{i}{image_ext}" for i in self.ids]
        self.masks = [self.root / mask_dir / f"{i}{mask_ext}" for i in self.ids]
        missing = [str(p) for pair in zip(self.images, self.masks) for p in pair if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"split file {split_file} names {len(missing)} missing files, e.g. {missing[:3]}; "
                f"check dataset.image_dir/mask_dir/image_ext/mask_ext or remove those ids from the split"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = np.array(Image.open(self.images[index]).convert("RGB"))
        with Image.open(self.masks[index]) as mask_file:
            if mask_file.mode not in ("P", "L"):
                raise ValueError(
                    f"mask {self.masks[index]} has mode {mask_file.mode}; save masks as palette or "
                    f"8-bit grayscale PNGs of class indices"
                )
            mask = np.array(mask_file)
        if self.transform is not None:
            sample = self.transform(image=image, mask=mask)
            image, mask = sample["image"], sample["mask"]
        else:
            image, mask = torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask)
        return {"image": image, "mask": torch.as_tensor(mask).long()}


def seed_worker_transforms(worker_id: int) -> None:
    """albumentations keeps its own RNG, deaf to global seeds: derive it from the worker's torch seed."""
    dataset = torch.utils.data.get_worker_info().dataset
    if hasattr(dataset.transform, "set_random_seed"):
        dataset.transform.set_random_seed(torch.initial_seed() % 2**32)


class VOCSegmentationDataModule(L.LightningDataModule):
    """Any folder in VOC layout; ``mean``/``std`` are the backbone's, given by whoever builds the model."""

    def __init__(
        self,
        root: str,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        crop_size: int = 512,
        scale_range: Sequence[float] = (0.5, 2.0),
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = True,
        ignore_index: int = 255,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = "test",
        image_dir: str = "JPEGImages",
        mask_dir: str = "SegmentationClass",
        split_dir: str = "ImageSets/Segmentation",
        image_ext: str = ".jpg",
        mask_ext: str = ".png",
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
        self.mean, self.std = tuple(mean), tuple(std)
        self.crop_size, self.scale_range, self.ignore_index = crop_size, tuple(scale_range), ignore_index
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.layout = dict(image_dir=image_dir, mask_dir=mask_dir, split_dir=split_dir, image_ext=image_ext, mask_ext=mask_ext)
        self.datasets: dict[str, VOCSegmentationDataset] = {}

    def dataset(self, stage: str) -> VOCSegmentationDataset:
        if stage not in self.datasets:
            if stage == "train":
                transform = train_transforms(self.crop_size, self.mean, self.std, self.ignore_index, self.scale_range)
            else:
                transform = eval_transforms(self.mean, self.std)
            self.datasets[stage] = VOCSegmentationDataset(self.root, self.splits[stage], transform, **self.layout)
        return self.datasets[stage]

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], None: ["train", "val", "test"]}
        for split in wanted.get(stage, []):
            if self.splits[split]:
                self.dataset(split)

    def _loader(self, stage: str, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = self.dataset(stage)
        if self.num_workers == 0 and hasattr(dataset.transform, "set_random_seed"):
            dataset.transform.set_random_seed(int(torch.randint(2**31, ())))  # follows the global seed
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            worker_init_fn=seed_worker_transforms if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.val_batch_size, shuffle=False)
