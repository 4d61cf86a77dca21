"""Long-tailed (class-imbalanced) subsets, as in the LDAM-DRW and official imbalance code."""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from ._dataset import Dataset

__all__ = ["long_tailed", "long_tailed_counts"]


def long_tailed_counts(n_max: int, num_classes: int, profile: str, imbalance: float) -> list[int]:
    """Per-class sizes of a long-tailed subset.

    ``"exp"``: class ``i`` keeps ``floor(n_max * imbalance ** (i / (C - 1)))`` (CIFAR-10 with
    ``imbalance=0.01``: 5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50). ``"step"``: the first
    ``C // 2`` classes keep ``n_max``, the others ``floor(n_max * imbalance)``.
    """
    if profile == "exp":
        if num_classes == 1:
            return [n_max]
        return [int(n_max * imbalance ** (i / (num_classes - 1))) for i in range(num_classes)]
    if profile == "step":
        half = num_classes // 2
        return [n_max] * half + [int(n_max * imbalance)] * (num_classes - half)
    raise ValueError(f"profile must be 'exp' or 'step', got {profile!r}")


def long_tailed(dataset: Dataset, *, profile: str = "exp", imbalance: float = 0.01, seed: int = 0) -> Dataset:
    """Subsample the training set of ``dataset`` into a long-tailed one.

    Class ``i`` keeps ``long_tailed_counts(n_max, C, profile, imbalance)[i]`` training images,
    where ``n_max`` is the size of the largest class (a class smaller than its target keeps all
    its images). Which images are kept is a seeded random choice per class; kept images stay in
    their original order. The test set is unchanged.

    Parameters
    ----------
    dataset : Dataset
    profile : {"exp", "step"}
    imbalance : float
        Ratio of the smallest to the largest class size, in ``(0, 1]`` (0.01 = ratio 100).
    seed : int
        Seed of the ``numpy.random.default_rng`` used to choose the kept images.

    Returns
    -------
    Dataset
        Named ``f"{dataset.name}-lt-{profile}-{imbalance:g}"``, e.g. ``"cifar10-lt-exp-0.01"``.
    """
    if isinstance(imbalance, bool) or not isinstance(imbalance, numbers.Real):
        raise TypeError(f"imbalance must be a real number in (0, 1], got {imbalance!r}")
    if not (math.isfinite(imbalance) and 0.0 < imbalance <= 1.0):
        raise ValueError(f"imbalance must be in (0, 1], got {imbalance!r}")
    sizes = np.bincount(dataset.y_train, minlength=dataset.num_classes)
    counts = long_tailed_counts(int(sizes.max()), dataset.num_classes, profile, float(imbalance))
    rng = np.random.default_rng(seed)
    keep = []
    for c, target in enumerate(counts):
        idx = np.flatnonzero(dataset.y_train == c)
        keep.append(rng.permutation(idx)[: min(target, idx.size)])
    kept = np.sort(np.concatenate(keep))
    return dataclasses.replace(
        dataset,
        name=f"{dataset.name}-lt-{profile}-{imbalance:g}",
        x_train=dataset.x_train[kept],
        y_train=dataset.y_train[kept],
    )
