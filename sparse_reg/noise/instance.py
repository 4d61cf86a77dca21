"""Instance-dependent noise (Xia et al., NeurIPS 2020)."""

from __future__ import annotations

import numpy as np

from ._result import NoisyLabels, make_result
from ._sampling import sample_per_row
from ._validate import check_labels, check_rate, check_seed

__all__ = ["instance_dependent"]

_FLIP_STD = 0.1


def instance_dependent(
    labels: np.ndarray,
    features: np.ndarray,
    rate: float,
    num_classes: int,
    *,
    seed: int,
) -> NoisyLabels:
    """Instance-dependent noise with the generator of Xia et al. (2020).

    This is the generator of X. Xia, T. Liu, B. Han, N. Wang, M. Gong, H. Liu, G. Niu, D. Tao and
    M. Sugiyama, "Part-dependent Label Noise: Towards Instance-dependent Label Noise", NeurIPS
    2020 (function ``get_instance_noisy_label`` of their code), the "IDN" benchmark used by
    later work:

    1. per sample, a flip rate ``q_k`` is drawn from a normal distribution with mean ``rate`` and
       standard deviation 0.1 truncated to ``[0, 1)`` (exact rejection sampling);
    2. per class ``c``, a projection ``W_c`` of shape ``(d, C)`` is drawn with i.i.d. N(0, 1)
       entries;
    3. sample ``k`` of clean class ``y`` gets the distribution ``p_k[j] = q_k *
       softmax_{j != y}(x_k @ W_y)`` for ``j != y`` and ``p_k[y] = 1 - q_k``;
    4. the noisy label is drawn from ``p_k``.

    The expected flip rate is the mean of the truncated normal (``rate`` when ``rate`` is far from
    0 and 1). As in the original code, the features are used as given (flattened); pass them
    normalised the way the model sees them, since their scale sets how peaked the softmax is.

    Parameters
    ----------
    labels : array_like of int
        Clean labels, 1-D, in ``[0, num_classes)``.
    features : array_like
        One row per label, any trailing shape (flattened to ``d`` features).
    rate : float
        Location of the per-sample flip rates, in ``[0, 1)``.
    num_classes : int
        Number of classes ``C`` (at least 2).
    seed : int
        Seed of the ``numpy.random.default_rng`` stream.

    Returns
    -------
    NoisyLabels
        ``transition`` is the expected transition given these features: row ``c`` is the mean of
        ``p_k`` over the samples of class ``c`` (NaN rows for absent classes).
    """
    clean, num_classes = check_labels(labels, num_classes)
    rate = check_rate(rate)
    seed = check_seed(seed)
    if num_classes < 2:
        raise ValueError("num_classes must be >= 2 for instance-dependent noise")
    x = np.asarray(features)
    if x.ndim < 1 or x.shape[0] != clean.shape[0]:
        raise ValueError(
            f"features must have one row per label ({clean.shape[0]}), got shape {x.shape}"
        )
    if not (np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_):
        raise ValueError(f"features must be numeric, got dtype {x.dtype}")
    x = x.reshape(clean.shape[0], -1).astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("features has non-finite entries")

    rng = np.random.default_rng(seed)
    q = _truncated_normal(rng, rate, _FLIP_STD, clean.shape[0])
    probs = np.empty((clean.shape[0], num_classes))
    for c in range(num_classes):
        w = rng.standard_normal((x.shape[1], num_classes))
        idx = np.flatnonzero(clean == c)
        if idx.size:
            probs[idx] = _row_distribution(x[idx] @ w, c, q[idx])
    noisy = sample_per_row(probs, rng)

    transition = np.full((num_classes, num_classes), np.nan)
    for c in range(num_classes):
        members = clean == c
        if members.any():
            transition[c] = probs[members].mean(axis=0)
    return make_result(
        clean, noisy, transition, seed, f"instance-dependent (Xia et al. 2020) {rate:g}"
    )


def _row_distribution(scores: np.ndarray, own: int, q: np.ndarray) -> np.ndarray:
    """``q * softmax`` over the other classes, ``1 - q`` on the own class."""
    scores = scores.copy()
    scores[:, own] = -np.inf
    scores -= scores.max(axis=1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=1, keepdims=True)
    out = q[:, None] * weights
    out[:, own] = 1.0 - q
    return out


def _truncated_normal(rng: np.random.Generator, mean: float, std: float, n: int) -> np.ndarray:
    """Exact N(mean, std) draws conditioned on ``[0, 1)``, by rejection."""
    out = np.empty(n)
    filled = 0
    while filled < n:
        draws = rng.normal(mean, std, size=2 * (n - filled) + 16)
        keep = draws[(draws >= 0.0) & (draws < 1.0)][: n - filled]
        out[filled : filled + keep.size] = keep
        filled += keep.size
    return out
