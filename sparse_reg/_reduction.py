r"""The batch reduction of per-sample values, and the factor it puts on each sample's gradient.

``"mean"`` is :math:`\frac1N\sum_i J_i` (0 for an empty batch, so it never poisons a sum of losses),
``"sum"`` is :math:`\sum_i J_i` and ``"none"`` keeps the ``(N,)`` values. The fast paths fold
:func:`gradient_scale` into their kernels, so a reduction costs no extra pass over the gradient.
"""

from __future__ import annotations

from types import ModuleType

from sparse_reg._numerics import Array

__all__ = ["REDUCTIONS", "check_reduction", "gradient_scale", "reduce", "reduce_objective"]

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


def reduce(per_sample: Array, reduction: str, xp: ModuleType) -> Array:
    """Apply ``reduction`` to per-sample values of shape ``(N,)``."""
    if reduction == "none":
        return per_sample
    total = xp.sum(per_sample)
    return total / max(per_sample.shape[0], 1) if reduction == "mean" else total


def reduce_objective(
    base: Array, penalty: Array, lam: object, reduction: str, xp: ModuleType
) -> tuple[Array, Array, Array]:
    """``(value, base, penalty)`` with ``value = base + lam * penalty``, each reduced in ``xp``."""
    if reduction != "none":
        base, penalty = reduce(base, reduction, xp), reduce(penalty, reduction, xp)
    return base + lam * penalty, base, penalty
