"""Shuffling and augmentation that depend on (seed, epoch, index) alone, so a resumed run repeats an
uninterrupted one exactly, whatever the number of workers or processes."""
from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import DistributedSampler


class EpochShuffleSampler(DistributedSampler):
    """A fresh permutation per epoch from ``seed + epoch``, split over ``num_replicas`` processes by stride.

    Yields ``(epoch, index)`` keys so the dataset can seed each sample's augmentation the same way. Rank
    ``r`` takes positions ``r, r + n, ...`` of the one global permutation, so with batch ``b`` per process
    every optimiser step sees the same ``n * b`` images as a single process with batch ``n * b``. Being a
    DistributedSampler already, Lightning leaves it in place under DDP (and calls ``set_epoch``).

    ``start`` skips the first samples of the epoch (set when resuming mid-epoch, see segmodels' ``ExactResume``);
    the length stays the epoch's, so the trainer's batch count does not change.
    """

    def __init__(self, length: int, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(length), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for position, index in enumerate(super().__iter__()):
            if position >= self.start:
                yield self.epoch, index


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])
