"""Error bars and paired tests for segmentation scores: what a reviewer asks of "A beats B".

- ``interval``: mean, standard deviation, n and the 95% confidence interval of a metric over seeds or folds
  (Student's t, as for any small sample of independent runs).
- ``paired_bootstrap``: the bootstrap of the mIoU difference between two models (Efron & Tibshirani 1993; the usual
  protocol for comparing segmentation models on one test set). Each resample draws the test images with replacement,
  the same draw for both models, and recomputes dataset-level mIoU from the summed per-image confusion counts (never a
  mean of per-image IoUs). With several seeds per model, runs are paired by seed and each resample also draws the seed
  pairs with replacement before averaging their differences: a two-level bootstrap over test images and training
  randomness (Bouthillier et al. 2021, "Accounting for variance in machine learning benchmarks"), so seeds that
  disagree widen the interval. With one run a side, the interval covers the choice of test images only. The interval
  is the percentile interval; the p-value is the two-sided share of resampled differences on the other side of zero.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats


def miou_of(confusion: np.ndarray) -> np.ndarray:
    """mIoU of (..., C, C) confusion counts (rows: truth, columns: prediction); a class with no pixel in truth or
    prediction has no IoU and is left out of the mean, as ``scores_from_confusion`` does."""
    confusion = np.asarray(confusion, dtype=np.float64)
    hits = np.diagonal(confusion, axis1=-2, axis2=-1)
    union = confusion.sum(-1) + confusion.sum(-2) - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, hits / union, np.nan)
    return np.nanmean(iou, axis=-1)


def interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample standard deviation, n and the t-distribution confidence interval of the mean."""
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "std": float("nan"), "n": n, "ci_low": float("nan"), "ci_high": float("nan")}
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / np.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci_low": mean - half, "ci_high": mean + half}


def paired_bootstrap(a: Sequence[np.ndarray], b: Sequence[np.ndarray], resamples: int = 10_000, seed: int = 0,
                     confidence: float = 0.95) -> dict[str, float]:
    """mIoU(A) - mIoU(B) with its bootstrap interval and p-value. ``a`` and ``b`` hold one (images, C, C) array of
    per-image confusion counts per run, paired by position (seed); every run scored the same images in the same
    order."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired comparison needs the same number of runs on each side (got {len(a)} and {len(b)}); "
                         f"pair them by seed")
    shapes = {np.shape(x) for x in [*a, *b]}
    if len(shapes) != 1:
        raise ValueError(f"the runs scored different test sets (per-image confusion shapes {sorted(shapes)}): a paired "
                         f"comparison needs the same images")
    images, pairs = shapes.pop()[0], len(a)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(images, np.full(images, 1 / images), size=resamples).astype(np.float64)  # (R, images)
    per_pair = np.zeros((pairs, resamples))  # each pair's difference under each image draw
    observed = np.zeros(pairs)
    for index, (first, second) in enumerate(zip(a, b)):
        first, second = (np.asarray(x, dtype=np.float64).reshape(images, -1) for x in (first, second))
        classes = int(np.sqrt(first.shape[1]))
        observed[index] = miou_of(first.sum(0).reshape(classes, classes)) - miou_of(second.sum(0).reshape(classes, classes))
        per_pair[index] = (miou_of((weights @ first).reshape(-1, classes, classes))
                           - miou_of((weights @ second).reshape(-1, classes, classes)))
    # the second level: which seed pairs each resample holds (with one pair, always that pair)
    seed_draws = rng.multinomial(pairs, np.full(pairs, 1 / pairs), size=resamples).astype(np.float64)  # (R, pairs)
    differences = (seed_draws * per_pair.T).sum(1) / pairs
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    p_value = min(1.0, 2 * min(float((differences <= 0).mean()), float((differences >= 0).mean())))
    covers = ("test images and training seeds" if pairs > 1
              else "test images only (one run a side: add seeds to cover training randomness)")
    return {"difference": float(observed.mean()), "ci_low": float(low), "ci_high": float(high), "p_value": p_value,
            "resamples": resamples, "images": images, "pairs": pairs, "covers": covers,
            "pair_differences": observed.tolist()}
