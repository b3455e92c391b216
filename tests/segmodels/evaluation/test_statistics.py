"""Error bars and the paired bootstrap against independent computations (scipy's own bootstrap, t tables)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from segmodels.evaluation.statistics import interval, miou_of, paired_bootstrap


def per_image_confusions(rng: np.random.Generator, images: int, accuracy: float) -> np.ndarray:
    """(images, 3, 3) counts: 100 labelled pixels an image, right with probability ``accuracy``."""
    confusion = np.zeros((images, 3, 3), dtype=np.int64)
    for i in range(images):
        truth = rng.integers(0, 3, 100)
        wrong = rng.random(100) > accuracy
        prediction = np.where(wrong, (truth + rng.integers(1, 3, 100)) % 3, truth)
        np.add.at(confusion[i], (truth, prediction), 1)
    return confusion


def test_miou_of_counts_by_hand():
    confusion = np.array([[8, 2, 0], [1, 4, 0], [0, 0, 0]])  # class 2 absent from truth and prediction: no IoU
    assert miou_of(confusion) == pytest.approx((8 / 11 + 4 / 7) / 2)


def test_interval_is_students_t():
    summary = interval([0.70, 0.72, 0.74])
    assert summary["mean"] == pytest.approx(0.72) and summary["std"] == pytest.approx(0.02) and summary["n"] == 3
    half = 4.302652729911275 * 0.02 / np.sqrt(3)  # t(0.975, 2) from a table
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((0.72 - half, 0.72 + half))


def test_paired_bootstrap_agrees_with_scipys_bootstrap():
    rng = np.random.default_rng(0)
    a, b = per_image_confusions(rng, 40, 0.8), per_image_confusions(rng, 40, 0.7)

    def difference(indices):
        indices = np.asarray(indices, dtype=int)
        return miou_of(a[indices].sum(0)) - miou_of(b[indices].sum(0))

    reference = stats.bootstrap((np.arange(40),), difference, vectorized=False, n_resamples=10_000, method="percentile",
                                random_state=1, confidence_level=0.95)
    ours = paired_bootstrap([a], [b], resamples=10_000, seed=0)
    assert ours["difference"] == pytest.approx(difference(np.arange(40)))
    assert ours["ci_low"] == pytest.approx(reference.confidence_interval.low, abs=0.01)
    assert ours["ci_high"] == pytest.approx(reference.confidence_interval.high, abs=0.01)
    assert ours["ci_low"] > 0 and ours["p_value"] < 0.01  # 80% against 70% right on 40 images: a real difference


def test_identical_runs_differ_by_nothing_and_seeds_pair():
    rng = np.random.default_rng(1)
    a = [per_image_confusions(rng, 20, 0.8) for _ in range(3)]
    same = paired_bootstrap(a, a, resamples=2_000)
    assert same["difference"] == 0 and same["ci_low"] == same["ci_high"] == 0 and same["p_value"] == 1.0
    swapped = paired_bootstrap(a, a[::-1], resamples=2_000)  # the seeds paired in another order
    expected = np.mean([miou_of(x.sum(0)) - miou_of(y.sum(0)) for x, y in zip(a, a[::-1])])
    assert swapped["difference"] == pytest.approx(expected) and swapped["pairs"] == 3
    with pytest.raises(ValueError, match="the same number of runs on each side"):
        paired_bootstrap(a, a[:2])
    with pytest.raises(ValueError, match="different test sets"):
        paired_bootstrap([a[0]], [a[0][:10]])


def test_seeds_that_disagree_widen_the_interval():
    # seed 0: A beats B by far; seed 1: B beats A by far. 200 images each, so the image draw alone is narrow.
    rng = np.random.default_rng(2)
    a = [per_image_confusions(rng, 200, 0.95), per_image_confusions(rng, 200, 0.55)]
    b = [per_image_confusions(rng, 200, 0.60), per_image_confusions(rng, 200, 0.90)]
    pair_differences = [miou_of(x.sum(0)) - miou_of(y.sum(0)) for x, y in zip(a, b)]
    assert pair_differences[0] > 0.3 and pair_differences[1] < -0.3
    result = paired_bootstrap(a, b, resamples=4_000)
    assert result["pair_differences"] == pytest.approx(pair_differences) and result["covers"].startswith("test images and")
    # drawing both pairs of one seed is a quarter of the resamples: the interval reaches each seed's own difference
    assert result["ci_low"] < pair_differences[1] + 0.05 and result["ci_high"] > pair_differences[0] - 0.05
    assert result["p_value"] > 0.2
    single = paired_bootstrap(a[:1], b[:1], resamples=4_000)
    assert single["covers"].startswith("test images only") and single["ci_high"] - single["ci_low"] < 0.1


def test_compare_prints_a_p_value_below_the_resolution_as_a_bound():
    from segmodels.cli.compare import p_text

    assert p_text(0.0, 10_000) == "p < 1e-4" and p_text(0.0312, 10_000) == "p = 0.0312"
