r"""The batch reduction of per-sample values, and the factor it puts on each sample's gradient.

``"mean"`` is :math:`\frac1N\sum_i J_i` (0 for an empty batch, so it never poisons a sum of losses),
``"sum"`` is :math:`\sum_i J_i` and ``"none"`` keeps the ``(N,)`` values. With sample weights
(:mod:`sparse_reg.criterion`) the mean divides by their total :math:`W` instead of :math:`N`, and
is 0 when :math:`W = 0`. The fast paths fold
:func:`gradient_scale` into their kernels, so a reduction costs no extra pass over the gradient.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from sparse_reg._numerics import Array

__all__ = [
    "REDUCTIONS", "check_reduction", "gradient_scale", "reduce", "reduce_objective", "weighted_scale",
]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    """``reduction`` must be one of :data:`REDUCTIONS`."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}; got {reduction!r}"
        )
    return reduction


def gradient_scale(reduction: str, num_rows: int) -> float:
    """:math:`\\partial\\,\\text{reduced}/\\partial J_i`: :math:`1/N` for a mean, else 1."""
    return 1.0 / max(num_rows, 1) if reduction == "mean" else 1.0


def weighted_scale(reduction: str, total: Array, xp: ModuleType) -> Array | float:
    """:func:`gradient_scale` for a mean over samples of total weight ``total`` (a 0-D array):
    :math:`1/W`, and 0 where :math:`W = 0`."""
    if reduction != "mean":
        return 1.0
    positive = total > 0
    return xp.where(positive, 1 / xp.where(positive, total, xp.ones_like(total)), xp.zeros_like(total))


def reduce(per_sample: Array, reduction: str, xp: ModuleType, total: Array | None = None) -> Array:
    """Apply ``reduction`` to per-sample values of shape ``(N,)``; a mean divides by ``total`` (a
    0-D array, the samples' total weight) when given, else by :math:`N`."""
    if reduction == "none":
        return per_sample
    summed = _sum(per_sample, xp)
    if reduction == "sum":
        return summed
    if total is None:
        return summed / max(per_sample.shape[0], 1)
    return summed * weighted_scale(reduction, total, xp)


def _sum(x: Array, xp: ModuleType) -> Array:
    """``xp.sum(x)``. With NumPy itself as ``xp`` (the torch CPU path reduces there), the ufunc is
    called directly: the same pairwise sum, without ``np.sum``'s dispatch, which costs more than
    the sum of a small batch."""
    return np.add.reduce(x, axis=None) if xp is np else xp.sum(x)


def reduce_objective(
    base: Array, penalty: Array, lam: object, reduction: str, xp: ModuleType, total: Array | None = None
) -> tuple[Array, Array, Array]:
    """``(value, base, penalty)`` with ``value = base + lam * penalty``, each reduced in ``xp``
    (a mean over ``total`` as in :func:`reduce`)."""
    if reduction != "none":
        base, penalty = reduce(base, reduction, xp, total), reduce(penalty, reduction, xp, total)
    return base + lam * penalty, base, penalty
