"""Label-efficiency subsets and k-fold splits (issue 22)."""
from __future__ import annotations

import pytest

from datamodules.subsets import fold_ids, nested_order, subset_size


def test_subsets_are_nested_and_hold_every_class():
    ids = [f"im{i:02d}" for i in range(40)]
    classes = {i: {0} | ({1} if n % 4 == 0 else set()) | ({2} if n == 37 else set()) for n, i in enumerate(ids)}
    order = nested_order(ids, seed=3, classes_of=classes.__getitem__)
    assert sorted(order) == ids
    assert order[0] == "im37"  # the only image of the rarest class leads
    small, large = order[:subset_size(40, 0.0625, None)], order[:subset_size(40, 0.125, None)]
    assert len(small) == 2 and len(large) == 5 and set(small) <= set(large)
    assert set().union(*(classes[i] for i in order[:3])) == {0, 1, 2}
    assert nested_order(ids, seed=3, classes_of=classes.__getitem__) == order  # deterministic
    assert nested_order(ids, seed=4) != nested_order(ids, seed=3)
    with pytest.raises(ValueError, match=r"dataset.train_fraction=1.5: give a share in \(0, 1\]"):
        subset_size(40, 1.5, None)
    with pytest.raises(ValueError, match="dataset.train_count=41: the train split has 40 images"):
        subset_size(40, None, 41)


def test_folds_partition_the_pool():
    pool = [str(i) for i in range(23)]
    vals = [fold_ids(pool, 5, k, seed=0)[1] for k in range(5)]
    assert sorted(sum(vals, [])) == sorted(pool) and {len(v) for v in vals} == {4, 5}
    train, val = fold_ids(pool, 5, 2, seed=0)
    assert not set(train) & set(val) and len(train) + len(val) == 23
    with pytest.raises(ValueError, match="dataset.folds=5 dataset.fold=5: give folds >= 2 and a fold in 0..4"):
        fold_ids(pool, 5, 5, seed=0)
