"""PASCAL VOC layout (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/<split>.txt) as a
LightningDataModule: splits, checks, augmentation, loaders, and normalisation on the device."""
from __future__ import annotations

import functools
import hashlib
import random
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from .annotations import FORMATS, rasterise_coco, rasterise_labelme
from .checks import check_decodable, check_mask_values, check_sizes
from .dataset import VOCSegmentationDataset, read_class_names
from .layouts import label_ids_layout
from .layouts import reduce_zero_label as reduce_zero_label_map
from .leakage import check_leakage
from .masks import colour_table, read_class_colors, read_mask
from .normalization import Normalization, resolve_normalization
from .palette import palette_of
from .sampling import EpochShuffleSampler
from .subsets import fold_ids, nested_order, subset_size
from .transforms import eval_transforms, train_transforms


class VOCSegmentationDataModule(L.LightningDataModule):
    """Any folder in VOC layout.

    ``num_classes`` and ``class_names`` may come from the config, from ``class_names.txt`` in the root,
    or both (then they must agree). Images are normalised as the weights of ``backbone`` (its registered
    name) expect, or with explicit ``mean``/``std``; with more or fewer than three channels the RGB
    statistics are cycled as the first convolution's weights are. ``train_transforms`` (a list of
    albumentations transforms) replaces the built-in
    augmentation; tensor conversion is always appended. Loaders yield uint8 images and masks; Lightning
    calls ``on_after_batch_transfer`` to normalise them on the device (call ``normalize`` yourself in a
    hand-written loop).
    """

    def __init__(
        self,
        root: str,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        backbone: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
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
        check_images: bool = False,
        check_leakage: bool = True,
        train_fraction: float | None = None,
        train_count: int | None = None,
        subset_seed: int = 0,
        folds: int | None = None,
        fold: int = 0,
        split_fractions: Mapping[str, float] | None = None,
        split_seed: int = 0,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = "test",
        image_dir: str = "JPEGImages",
        image_dirs: Sequence[str] | None = None,
        mask_dir: str = "SegmentationClass",
        split_dir: str | None = "ImageSets/Segmentation",
        image_ext: str = ".jpg",
        mask_ext: str = ".png",
        reduce_zero_label: bool = False,
        label_ids: bool = False,
        prepare: str | None = None,
        palette: str = "voc",
        class_colors: Sequence[Sequence[int]] | None = None,
        annotations: str | None = None,
        annotation_file: str | None = None,
        mask_cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.palette = palette_of(palette)  # the class colours predict.py writes (checkpoints carry the name)
        self.root = Path(root)
        if annotations is not None:  # COCO or labelme JSON: drawn once into index PNGs, read as any mask from there
            mask_dir, names = self._rasterise(annotations, annotation_file, mask_cache_dir, image_dir, class_names,
                                              ignore_index)
            mask_ext, class_names = ".png", class_names or names
        colour_file = read_class_colors(self.root) if class_colors is None and self.root.is_dir() else None
        if colour_file and not class_names and read_class_names(self.root) is None:
            class_names = colour_file[0]  # CVAT's labelmap.txt names the classes too
        self.class_colors = [list(c) for c in class_colors] if class_colors is not None else \
            (colour_file[1] if colour_file else None)
        self.class_names, self.num_classes = self._classes(class_names, num_classes)
        if self.class_colors is not None and len(self.class_colors) != self.num_classes:
            raise ValueError(f"{len(self.class_colors)} class colours (dataset.class_colors or {self.root}/"
                             f"class_colors.txt) for {self.num_classes} classes; give one colour per class, in class order")
        self.backbone, self._statistics = backbone, (mean, std)
        self.crop_size, self.scale_range, self.ignore_index = crop_size, tuple(scale_range), ignore_index
        self.augmentations = list(train_transforms) if train_transforms is not None else None
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.check_samples, self.check_images, self.check_leakage = check_samples, check_images, check_leakage
        self._leakage_checked = False
        self.train_fraction, self.train_count, self.subset_seed = train_fraction, train_count, subset_seed
        self.folds, self.fold = folds, fold
        self._study_ids: dict[str, list[str]] | None = None
        self.split_fractions = dict(split_fractions) if split_fractions else None
        self.split_seed = split_seed
        self.configured_splits = {"train": train_split, "val": val_split, "test": test_split}
        if label_ids:  # Cityscapes' *_labelIds.png through the official table, without the preparation step
            mask_ext, mask_value_map = label_ids_layout(mask_ext, ignore_index)
        if reduce_zero_label:  # ADE20K: label 0 is "other"
            mask_value_map = reduce_zero_label_map(mask_value_map, ignore_index)
        self.layout = dict(
            image_dir=image_dir, image_dirs=image_dirs, mask_dir=mask_dir, split_dir=split_dir,
            image_ext=image_ext, mask_ext=mask_ext, mask_value_map=mask_value_map, prepare=prepare,
            colours=colour_table(self.class_colors, self.class_names) if self.class_colors is not None else None,
            colour_names=self.class_names,
        )
        self.datasets: dict[str, VOCSegmentationDataset] = {}

    def _rasterise(self, kind: str, annotation_file: str | None, cache_dir: str | None, image_dir: str,
                   class_names: Sequence[str] | None, ignore_index: int) -> tuple[str, list[str]]:
        """The cache folder of index PNGs for ``kind``'s annotation files, and the class names they define."""
        if kind not in FORMATS:
            raise ValueError(f"dataset.annotations={kind!r}: choose one of {', '.join(FORMATS)} (or null for masks)")
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} does not exist; check dataset.root")
        cache_root = Path(cache_dir) if cache_dir else self.root / ".segmodels_masks"
        if kind == "coco":
            if not annotation_file:
                raise ValueError("dataset.annotations=coco needs dataset.annotation_file=<the COCO JSON, relative to "
                                 "dataset.root>")
            folder, names = rasterise_coco(self.root / annotation_file, cache_root, ignore_index)
        else:
            folder, names = rasterise_labelme(self.root / image_dir, cache_root, class_names or
                                              read_class_names(self.root), ignore_index)
        return str(folder.resolve()), names

    def _classes(self, class_names: Sequence[str] | None, num_classes: int | None) -> tuple[list[str], int]:
        from_file = read_class_names(self.root) if not class_names else None
        names = list(class_names or from_file or [])
        if names and num_classes is not None and len(names) != num_classes:
            source = f"{self.root / 'class_names.txt'}" if from_file else "dataset.class_names"
            raise ValueError(
                f"{source} lists {len(names)} classes but dataset.num_classes={num_classes}; make them agree "
                f"(or set dataset.num_classes=null to take the count from the names)"
            )
        if not names and num_classes is None and not self.root.exists():
            raise FileNotFoundError(f"dataset root {self.root} does not exist; check dataset.root (or data_dir, which "
                                    f"it starts from) and the folder's name")
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
        photometric = self.in_channels == 3 and self.eight_bit  # colour jitter means something for 8-bit RGB only
        return train_transforms(self.crop_size, self.ignore_index, self.scale_range, self.augmentations, photometric)

    @functools.cached_property
    def normalization(self) -> Normalization:
        """The backbone's statistics (or the explicit ones) for this dataset's channel count; asked for
        only when images are normalised, so reading and checking data needs neither."""
        if not self.eight_bit and self._statistics[0] is None:
            raise ValueError(
                f"images in {self.root} are not 8-bit (their values reach past 255), so the backbone's statistics, "
                f"made for 8-bit RGB, would not centre them; compute the data's own with python -m datamodules.summary "
                f"{self.root} --channel-stats, and pass the dataset.mean=[...] dataset.std=[...] it prints"
            )
        return resolve_normalization(self.backbone, *self._statistics).for_channels(self.in_channels)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.normalization.mean

    @mean.setter
    def mean(self, value: Sequence[float]) -> None:
        self._set_statistics("mean", value)

    @property
    def std(self) -> tuple[float, ...]:
        return self.normalization.std

    @std.setter
    def std(self, value: Sequence[float]) -> None:
        self._set_statistics("std", value)

    def _set_statistics(self, name: str, value: Sequence[float]) -> None:
        """Deprecated: assigning ``datamodule.mean``/``std`` (before the statistics came from the constructor)."""
        warnings.warn(f"assigning datamodule.{name} is deprecated; pass {name}=[...] to the constructor "
                      f"(dataset.{name}=[...] on the command line)", FutureWarning, stacklevel=3)
        mean, std = self._statistics
        self._statistics = (list(value), std) if name == "mean" else (mean, list(value))
        self.__dict__.pop("normalization", None)  # recomputed from the new statistics

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float, with the backbone's mean and std, on the images' device."""
        return self.normalization(images)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        # loaders ship uint8 images and masks; the float work happens here, on the training device
        return {**batch, "image": self.normalize(batch["image"]), "mask": batch["mask"].long()}

    def split_ids(self, split: str) -> list[str] | None:
        """With ``split_fractions`` (no split files, as labelme exports): a partition of the masks, seeded by
        ``split_seed`` (fixed while the training seed varies, so every seed tests on the same images)."""
        if not self.split_fractions:
            return None
        if split not in self.split_fractions:
            raise ValueError(f"split '{split}' has no share in dataset.split_fractions {self.split_fractions}")
        mask_dir, ext = self.root / self.layout["mask_dir"], self.layout["mask_ext"]
        ids = sorted(p.name[: -len(ext)] for p in mask_dir.glob(f"*{ext}"))
        random.Random(self.split_seed).shuffle(ids)
        total, start = sum(self.split_fractions.values()), 0.0
        for name, share in self.split_fractions.items():
            end = start + share / total
            if name == split:
                return ids[round(start * len(ids)) : round(end * len(ids))]
            start = end
        return None

    @property
    def study(self) -> bool:
        """Whether a label-efficiency subset or a k-fold split changes which ids train and val read."""
        return bool(self.folds) or self.train_fraction is not None or self.train_count is not None

    def ids_for(self, stage: str) -> list[str] | None:
        """The ids split ``stage`` reads: its split file's (None: the dataset reads it), or ``split_fractions``'; for
        train and val, then the k-fold split of train + val and the nested label-efficiency subset of train."""
        if stage == "test" or not self.study:
            return self.split_ids(self.splits[stage])
        if self._study_ids is None:
            train = self._listed("train")
            val = self._listed("val") if self.splits["val"] else []
            if self.folds:
                train, val = fold_ids(train + val, self.folds, self.fold, self.subset_seed)
            order = nested_order(train, self.subset_seed, self._classes_in)
            train = order[: subset_size(len(order), self.train_fraction, self.train_count)]
            self._study_ids = {"train": train, "val": val}
        return self._study_ids[stage]

    def _listed(self, stage: str) -> list[str]:
        split = self.splits[stage]
        return self.split_ids(split) or VOCSegmentationDataset(self.root, split, ids=None, **self.layout).ids

    def _classes_in(self, image_id: str) -> set[int]:
        """The classes one training mask holds (ignored pixels aside): so every subset keeps every class it can."""
        path = self.root / self.layout["mask_dir"].format(split=self.splits["train"]) / f"{image_id}{self.layout['mask_ext']}"
        values = np.unique(read_mask(path, self.layout["mask_value_map"], self.layout["colours"], self.class_names))
        return {int(v) for v in values if v != self.ignore_index}

    def dataset(self, stage: str) -> VOCSegmentationDataset:
        if stage not in self.datasets:
            split = self.splits[stage]
            dataset = VOCSegmentationDataset(self.root, split, self._transform(stage), ids=self.ids_for(stage), **self.layout)
            check_sizes(dataset.images, dataset.masks)
            if self.check_images:  # a full decode: ~22 s per 10,000 VOC-sized pairs here (README: When things go wrong)
                check_decodable(dataset.images, dataset.masks, keep_single_channel=len(dataset.image_dirs) > 1,
                                reader=dataset.mask_reader)
            check_mask_values(dataset.masks, self.num_classes, self.ignore_index, dataset.mask_value_map, self.check_samples,
                              reader=dataset.mask_reader)
            self.datasets[stage] = dataset
        return self.datasets[stage]

    @functools.cached_property
    def _first_image(self) -> np.ndarray:
        """The first image of the first split configured: what the data's channels and bit depth are read from."""
        for stage in ("train", "val", "test"):
            if self.splits[stage]:
                split = self.splits[stage]
                dataset = VOCSegmentationDataset(self.root, split, ids=self.split_ids(split), **self.layout)
                return dataset.read(0)[0]
        raise ValueError("no split configured")

    @property
    def in_channels(self) -> int:
        """Channels of one input image (a multi-band TIFF: its bands)."""
        return self._first_image.shape[-1]

    @property
    def eight_bit(self) -> bool:
        """Whether the images are 8-bit (uint8), as the backbones' own statistics and colour jitter assume."""
        return self._first_image.dtype == np.uint8

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], None: ["train", "val", "test"]}
        for split in wanted.get(stage, []):
            if self.splits[split]:
                self.dataset(split)
        if stage in ("fit", None) and self.check_leakage and not self._leakage_checked:
            check_leakage({s: self.dataset(s).images for s in ("train", "val", "test") if self.has_split(s)})
            self._leakage_checked = True

    def has_split(self, stage: str) -> bool:
        """Whether split ``stage`` is configured and its ids can be found (a VOC download may lack test.txt)."""
        return self.split_exists(self.splits[stage])

    def split_exists(self, split: str | None) -> bool:
        """Whether split ``split`` can be read: its split file, its folder, or its share in ``split_fractions``."""
        if not split:
            return False
        if self.split_fractions:
            return split in self.split_fractions
        if self.layout["split_dir"] is None:  # a folder per split (ADE20K, Cityscapes, COCO-Stuff)
            return (self.root / self.layout["image_dir"].format(split=split)).is_dir()
        return (self.root / self.layout["split_dir"] / f"{split}.txt").is_file()

    @property
    def splits(self) -> dict[str, str | None]:
        """The split each role reads. The test role reads ``test_split`` when that split exists (``test.txt`` beside
        ``train.txt``, a ``test`` folder, a ``test`` share); otherwise the validation split, which ``test_note`` then
        states: a figure on the images ``best.ckpt`` was chosen on is optimistic."""
        splits = dict(self.configured_splits)
        test, val = splits["test"], splits["val"]
        if test and val and test != val and not self.split_exists(test):
            splits["test"] = val
        return splits

    @property
    def test_on_val(self) -> bool:
        """Whether the test role reads the validation split (configured so, or for want of a test split)."""
        splits = self.splits
        return bool(splits["test"]) and splits["test"] == splits["val"]

    @property
    def test_note(self) -> str | None:
        """What a reader of the test figure must know when it is not from held-out images; None when it is."""
        if not self.test_on_val:
            return None
        configured = self.configured_splits["test"]
        why = (f"no split '{configured}' exists in {self.root}" if configured != self.splits["val"]
               else f"dataset.test_split={configured}")
        return (f"the test figure is on the validation split '{self.splits['val']}' ({why}): the split best.ckpt was "
                f"chosen on, so it is optimistic; add a {configured if configured != self.splits['val'] else 'test'} "
                f"split (e.g. test.txt beside train.txt, or a test share in dataset.split_fractions) for a held-out figure")

    def fingerprint(self, stages: Sequence[str] = ("train", "val", "test")) -> dict[str, dict[str, Any]]:
        """What a run's numbers were computed on, per configured split: its image count, the SHA-256 of its ids in
        order and the bytes of its image and mask files. Recorded with every run (provenance), so evaluate.py can
        tell when it scores other data than the run was trained and tested on."""
        result = {}
        for stage in stages:
            if self.splits[stage]:
                dataset = self.dataset(stage)
                files = [p for images, mask in zip(dataset.images, dataset.masks) for p in (*images, mask)]
                ids = hashlib.sha256("\n".join(dataset.ids).encode()).hexdigest()
                result[stage] = {"images": len(dataset), "ids_sha256": ids, "bytes": sum(p.stat().st_size for p in files)}
        return result

    def loader(self, stage: str, batch_size: int | None = None, shuffle: bool = False) -> DataLoader:
        """A loader over split ``stage`` (train, val or test): shuffled and seeded per sample when ``shuffle``, as
        training's; ``batch_size`` defaults to ``val_batch_size``."""
        batch_size = batch_size or self.val_batch_size
        dataset = self.dataset(stage)
        sampler, seed = None, 0
        if shuffle:  # albumentations keeps its own RNG, deaf to global seeds: seed it per sample instead
            dataset.seed = int(torch.initial_seed()) % 2**31
            trainer = getattr(self, "trainer", None)
            replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            sampler = EpochShuffleSampler(len(dataset), seed=dataset.seed, num_replicas=replicas, rank=rank)
            seed = dataset.seed
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            # each iter() draws the workers' base seed: from this generator, not the global RNG, so starting an epoch
            # moves no dropout mask (a resumed run draws at other moments than an uninterrupted one)
            generator=torch.Generator().manual_seed(seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", self.val_batch_size)
