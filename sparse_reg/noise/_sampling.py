"""The two ways of turning clean labels into noisy ones that every generator shares.

* :func:`sample_per_label` draws each noisy label independently from a transition matrix (the
  official MNIST and CIFAR-100-asymmetric code), so the realised rate is only close to the
  requested one.
* :func:`flip_exact_counts` selects exactly ``floor(rate_c * n_c)`` samples of each class ``c``
  without replacement and redraws only those (the official CIFAR symmetric code), so the number
  of selected samples is exact.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw", "flip_exact_counts", "flip_matrix", "sample_per_label", "sample_per_row"]


def draw(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Categorical draws by inverse CDF.

    Parameters
    ----------
    probs : numpy.ndarray
        One distribution of shape ``(C,)`` shared by all draws, or one per draw ``(k, C)``.
    u : numpy.ndarray
        Uniform variates in ``[0, 1)``, shape ``(k,)``.

    Returns
    -------
    numpy.ndarray
        int64 categories of shape ``(k,)``; zero-probability categories are never returned.
    """
    cdf = np.cumsum(probs, axis=-1)
    # Normalising by the total makes the last non-empty bin end at exactly 1, so rounding in
    # the cumulative sum can never send a draw past it into a zero-probability category.
    cdf = cdf / cdf[..., -1:]
    return (cdf <= u[:, None]).sum(axis=-1).astype(np.int64)


def flip_matrix(flip_rate: np.ndarray, destination: np.ndarray) -> np.ndarray:
    """Transition matrix of "select at rate ``flip_rate[c]``, redraw from ``destination[c]``".

    ``T = diag(1 - flip_rate) + flip_rate[:, None] * destination``. ``destination`` rows may put
    mass on their own class (a redraw may then keep the label).
    """
    num_classes = flip_rate.shape[0]
    return np.eye(num_classes) * (1.0 - flip_rate)[:, None] + flip_rate[:, None] * destination


def sample_per_label(
    labels: np.ndarray, transition: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``noisy[k] ~ transition[labels[k]]`` independently for every label."""
    u = rng.random(labels.shape[0])
    noisy = labels.copy()
    for c in range(transition.shape[0]):
        idx = np.flatnonzero(labels == c)
        if idx.size:
            noisy[idx] = draw(transition[c], u[idx])
    return noisy


def sample_per_row(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw ``noisy[k] ~ probs[k]`` independently, one distribution per sample."""
    return draw(probs, rng.random(probs.shape[0]))


def flip_exact_counts(
    labels: np.ndarray,
    flip_rate: np.ndarray,
    destination: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Redraw exactly ``floor(flip_rate[c] * n_c)`` labels of each class ``c``.

    Parameters
    ----------
    labels : numpy.ndarray
        Clean int64 labels.
    flip_rate : numpy.ndarray
        Per-class selection rate, shape ``(C,)``.
    destination : numpy.ndarray
        Row-stochastic ``(C, C)``; a selected sample of class ``c`` is relabelled with a draw from
        ``destination[c]``. With a zero diagonal every selected sample is flipped, so exactly
        ``floor(flip_rate[c] * n_c)`` labels of class ``c`` change.

    Returns
    -------
    numpy.ndarray
        The noisy labels.
    """
    noisy = labels.copy()
    for c in range(flip_rate.shape[0]):
        idx = np.flatnonzero(labels == c)
        # int() truncation, as in the official code: floor for non-negative products.
        count = int(flip_rate[c] * idx.size)
        if count == 0:
            continue
        chosen = rng.choice(idx, size=count, replace=False)
        noisy[chosen] = draw(destination[c], rng.random(count))
    return noisy
