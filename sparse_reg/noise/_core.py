"""Class-conditional noise from per-class flip rates and destinations, in either mode."""

from __future__ import annotations

import numpy as np

from ._result import NoisyLabels, make_result
from ._sampling import flip_exact_counts, flip_matrix, sample_per_label

__all__ = ["class_conditional", "mode_name"]


def mode_name(exact: bool) -> str:
    return "exact counts" if exact else "sampled per label"


def class_conditional(
    labels: np.ndarray,
    flip_rate: np.ndarray,
    destination: np.ndarray,
    *,
    exact: bool,
    seed: int,
    description: str,
) -> NoisyLabels:
    """Select class ``c`` samples at rate ``flip_rate[c]`` and redraw them from ``destination[c]``.

    ``exact=True`` selects exactly ``floor(flip_rate[c] * n_c)`` samples per class; ``exact=False``
    samples every label independently from ``flip_matrix(flip_rate, destination)``.
    """
    rng = np.random.default_rng(seed)
    transition = flip_matrix(flip_rate, destination)
    if exact:
        noisy = flip_exact_counts(labels, flip_rate, destination, rng)
    else:
        noisy = sample_per_label(labels, transition, rng)
    return make_result(labels, noisy, transition, seed, f"{description}, {mode_name(exact)}")
