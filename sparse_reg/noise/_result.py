"""The immutable record every noise generator returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["NoisyLabels", "fingerprint", "make_result", "realised_transition"]


@dataclass(frozen=True, eq=False)
class NoisyLabels:
    """Noisy labels together with what was asked for and what was obtained.

    All arrays are read-only.

    Attributes
    ----------
    labels : numpy.ndarray
        Noisy labels, int64, same length as the clean labels.
    flipped : numpy.ndarray
        Boolean mask, ``True`` where the noisy label differs from the clean one.
    transition : numpy.ndarray
        The requested ``C x C`` row-stochastic matrix, ``T[i, j] = P(noisy=j | clean=i)``. For
        procedures that are not class-conditional (sequential flips, instance-dependent noise)
        it is the expected transition, as documented by the generator.
    realised_transition : numpy.ndarray
        Empirical transition: ``counts[i, j] / n_i`` over the given labels. Rows of classes absent
        from the clean labels are NaN.
    realised_rate : float
        Fraction of labels flipped, ``flipped.mean()``.
    seed : int
        Seed of the ``numpy.random.default_rng`` stream that produced the labels.
    clean_fingerprint : str
        SHA-256 hex digest of the clean labels as little-endian int64 bytes, so a stored noisy
        label set can be checked against the clean labels it was made from.
    description : str
        Human-readable summary, e.g. ``"symmetric uniform-other 0.4, exact counts"``.
    """

    labels: np.ndarray
    flipped: np.ndarray
    transition: np.ndarray
    realised_transition: np.ndarray
    realised_rate: float
    seed: int
    clean_fingerprint: str
    description: str

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return int(self.transition.shape[0])


def fingerprint(labels: np.ndarray) -> str:
    """SHA-256 hex digest of ``labels`` as little-endian int64 bytes."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


def realised_transition(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """Empirical ``P(noisy=j | clean=i)``; NaN rows for classes absent from ``clean``."""
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (clean, noisy), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    out = np.full_like(counts, np.nan)
    np.divide(counts, totals, out=out, where=totals > 0)
    return out


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def make_result(
    clean: np.ndarray, noisy: np.ndarray, transition: np.ndarray, seed: int, description: str
) -> NoisyLabels:
    """Assemble a :class:`NoisyLabels` from clean labels, noisy labels and the requested matrix."""
    noisy = np.asarray(noisy, dtype=np.int64).copy()
    num_classes = transition.shape[0]
    flipped = noisy != clean
    return NoisyLabels(
        labels=_frozen(noisy),
        flipped=_frozen(flipped),
        transition=_frozen(np.array(transition, dtype=np.float64)),
        realised_transition=_frozen(realised_transition(clean, noisy, num_classes)),
        realised_rate=float(flipped.mean()),
        seed=seed,
        clean_fingerprint=fingerprint(clean),
        description=description,
    )
