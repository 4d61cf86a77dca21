"""Symmetric (uniform) and pair-flip noise."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._core import class_conditional
from ._result import NoisyLabels
from ._validate import check_labels, check_rate, check_seed

__all__ = ["pairflip", "symmetric"]


def symmetric(
    labels: np.ndarray,
    rate: float,
    num_classes: int | None = None,
    *,
    seed: int,
    target: Literal["other", "any"] = "other",
    exact: bool = True,
) -> NoisyLabels:
    """Symmetric (uniform) label noise.

    .. warning::
       "Symmetric noise at rate 0.4" means two different things in the literature, and the
       realised flip rate differs between them:

       * ``target="other"`` (**uniform-other**, the official CIFAR code and the paper's
         definition ``eta_ij = rate / (C - 1)`` for ``j != i``): a selected label is replaced by a
         uniformly drawn *different* class, so the fraction of labels that change is ``rate``.
       * ``target="any"`` (**uniform-any**, e.g. the DivideMix code): a selected label is replaced
         by a class drawn uniformly from *all* ``C`` classes, which may be the clean one. The
         fraction that actually changes is only ``rate * (C - 1) / C`` (0.36 for ``rate=0.4``
         and ``C=10``), and ``transition`` is ``(1 - rate) I + rate / C``.

    Parameters
    ----------
    labels : array_like of int
        Clean labels, 1-D, in ``[0, num_classes)``.
    rate : float
        Selection rate in ``[0, 1)``.
    num_classes : int, optional
        Number of classes ``C``; inferred as ``labels.max() + 1`` when omitted.
    seed : int
        Seed of the ``numpy.random.default_rng`` stream.
    target : {"other", "any"}
        Uniform-other or uniform-any relabelling, see above.
    exact : bool
        ``True`` (default, the official CIFAR procedure): exactly ``floor(rate * n_c)`` samples of
        each class ``c`` are selected without replacement, so with ``target="other"`` the realised
        rate equals ``rate`` up to this flooring. ``False`` (the official MNIST procedure): every
        label is drawn independently from ``transition``, so the realised rate is binomial
        around the expected rate.

    Returns
    -------
    NoisyLabels
    """
    clean, num_classes = check_labels(labels, num_classes)
    rate = check_rate(rate)
    seed = check_seed(seed)
    if target == "other":
        if num_classes < 2 and rate > 0:
            raise ValueError("num_classes must be >= 2 for uniform-other noise")
        destination = (np.ones((num_classes, num_classes)) - np.eye(num_classes)) / max(
            num_classes - 1, 1
        )
    elif target == "any":
        destination = np.full((num_classes, num_classes), 1.0 / num_classes)
    else:
        raise ValueError(f"target must be 'other' or 'any', got {target!r}")
    return class_conditional(
        clean,
        np.full(num_classes, rate),
        destination,
        exact=exact,
        seed=seed,
        description=f"symmetric uniform-{target} {rate:g}",
    )


def pairflip(
    labels: np.ndarray,
    rate: float,
    num_classes: int,
    *,
    seed: int,
    exact: bool = True,
) -> NoisyLabels:
    """Pair-flip noise (Han et al., Co-teaching, 2018): class ``i`` flips to ``(i + 1) mod C``.

    Parameters
    ----------
    labels : array_like of int
        Clean labels, 1-D, in ``[0, num_classes)``.
    rate : float
        Flip rate of every class, in ``[0, 1)``.
    num_classes : int
        Number of classes ``C`` (at least 2).
    seed : int
        Seed of the ``numpy.random.default_rng`` stream.
    exact : bool
        ``True``: exactly ``floor(rate * n_c)`` samples of each class flip. ``False``: each label
        flips independently with probability ``rate`` (Co-teaching's procedure).

    Returns
    -------
    NoisyLabels
    """
    clean, num_classes = check_labels(labels, num_classes)
    rate = check_rate(rate)
    seed = check_seed(seed)
    if num_classes < 2:
        raise ValueError("num_classes must be >= 2 for pair-flip noise")
    destination = np.roll(np.eye(num_classes), 1, axis=1)
    return class_conditional(
        clean,
        np.full(num_classes, rate),
        destination,
        exact=exact,
        seed=seed,
        description=f"pairflip {rate:g}",
    )
