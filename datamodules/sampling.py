"""Shuffling and augmentation that depend on (seed, epoch, index) alone, so a resumed run repeats an
uninterrupted one exactly, whatever the number of workers."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler):
    """A fresh permutation per epoch from ``seed + epoch``; yields ``(epoch, index)`` keys so the dataset
    can seed each sample's augmentation the same way (Lightning calls ``set_epoch`` every epoch)."""

    def __init__(self, length: int, seed: int = 0) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        for index in torch.randperm(self.length, generator=generator).tolist():
            yield self.epoch, index


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])
