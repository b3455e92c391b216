"""Which training images a study uses: label-efficiency subsets and k-fold splits, deterministic by a seed.

- ``nested_order``: one seeded order of the train ids in which, where the split allows, an image of every class
  comes first; a subset of any size is a prefix of it, so 1/16 of the data lies within 1/8, within 1/4 ... (the
  curve a transfer-learning paper draws compares nested sets, not independent draws), and every class present in
  the split is in every subset at least as large as the number of classes.
- ``fold_ids``: k folds of a pool of ids (train, or train + val), seeded; fold ``k`` validates, the rest trains.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence


def nested_order(ids: Sequence[str], seed: int, classes_of: Callable[[str], set[int]] | None = None) -> list[str]:
    """``ids`` in a seeded order, one image of each class first (rarest class first, each the earliest in the
    shuffled order that shows it) when ``classes_of`` tells which classes an image holds."""
    order = list(ids)
    random.Random(seed).shuffle(order)
    if classes_of is None:
        return order
    holds = {i: classes_of(i) for i in order}
    counts: dict[int, int] = {}
    for classes in holds.values():
        for c in classes:
            counts[c] = counts.get(c, 0) + 1
    first: list[str] = []
    for c in sorted(counts, key=lambda c: (counts[c], c)):
        if not any(c in holds[i] for i in first):
            first.append(next(i for i in order if c in holds[i]))
    chosen = set(first)
    return first + [i for i in order if i not in chosen]


def subset_size(total: int, fraction: float | None, count: int | None) -> int:
    """How many of ``total`` images ``dataset.train_fraction`` or ``dataset.train_count`` asks for (at least one)."""
    if fraction is not None and count is not None:
        raise ValueError(f"dataset.train_fraction={fraction} and dataset.train_count={count}: give one of them")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"dataset.train_fraction={fraction}: give a share in (0, 1], e.g. 0.125")
        return max(1, round(fraction * total))
    if count is not None:
        if not 1 <= count <= total:
            raise ValueError(f"dataset.train_count={count}: the train split has {total} images; give 1 to {total}")
        return count
    return total


def fold_ids(pool: Sequence[str], folds: int, fold: int, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, val ids) of fold ``fold`` of ``folds``: the seeded pool dealt round-robin into folds."""
    if folds < 2 or not 0 <= fold < folds:
        raise ValueError(f"dataset.folds={folds} dataset.fold={fold}: give folds >= 2 and a fold in 0..{folds - 1}")
    if len(pool) < folds:
        raise ValueError(f"dataset.folds={folds}: only {len(pool)} images to divide; use fewer folds")
    order = list(pool)
    random.Random(seed).shuffle(order)
    held = set(order[fold::folds])
    return [i for i in order if i not in held], [i for i in order if i in held]
