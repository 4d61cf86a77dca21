"""Noise from an arbitrary transition matrix."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._core import class_conditional, mode_name
from ._result import NoisyLabels, make_result
from ._sampling import sample_per_label
from ._validate import check_labels, check_matrix, check_seed

__all__ = ["from_transition_matrix"]


def from_transition_matrix(
    labels: np.ndarray,
    matrix: np.ndarray,
    *,
    seed: int,
    convention: Literal["row", "column"] = "row",
    exact: bool = False,
) -> NoisyLabels:
    """Class-conditional noise from any stochastic matrix.

    Parameters
    ----------
    labels : array_like of int
        Clean labels, 1-D, in ``[0, C)`` where ``C = matrix.shape[0]``.
    matrix : array_like
        ``C x C`` non-negative matrix. ``convention="row"``:
        ``matrix[i, j] = P(noisy=j | clean=i)``, rows sum to 1. ``convention="column"``:
        cleanlab's ``noise_matrix[noisy, clean]``, columns sum to 1.
        Sums must be within ``1e-8`` of 1.
    seed : int
        Seed of the ``numpy.random.default_rng`` stream.
    convention : {"row", "column"}
        See ``matrix``. ``transition`` in the result is always in the row convention.
    exact : bool
        ``False`` (default): every label is drawn independently from its row. ``True``: exactly
        ``floor((1 - T[c, c]) * n_c)`` samples of class ``c`` flip, each to a class drawn from the
        off-diagonal part of row ``c`` renormalised.

    Returns
    -------
    NoisyLabels
    """
    transition = check_matrix(matrix, convention)
    num_classes = transition.shape[0]
    clean, _ = check_labels(labels, num_classes)
    seed = check_seed(seed)
    description = f"transition matrix ({convention} convention)"
    if not exact:
        noisy = sample_per_label(clean, transition, np.random.default_rng(seed))
        return make_result(clean, noisy, transition, seed, f"{description}, {mode_name(False)}")
    flip_rate = 1.0 - np.diag(transition)
    off = transition * (1.0 - np.eye(num_classes))
    totals = off.sum(axis=1, keepdims=True)
    # Rows that never flip get a harmless one-hot destination instead of 0/0.
    safe = np.where(totals > 0, totals, 1.0)
    destination = np.where(totals > 0, off / safe, np.eye(num_classes))
    return class_conditional(
        clean, flip_rate, destination, exact=True, seed=seed, description=description
    )
