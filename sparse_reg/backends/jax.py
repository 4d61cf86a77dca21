"""JAX hook: autograd for value-only user losses (the array-API core runs on JAX unchanged)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["value_and_grad"]


def value_and_grad(per_sample: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
    """Per-sample values of ``per_sample(x)`` and the gradient of their sum, by
    :func:`jax.value_and_grad` (rows are independent, so row i of the gradient is sample i's)."""

    def total(z: Any) -> tuple[Any, Any]:
        values = per_sample(z)
        return jax.numpy.sum(values), values

    (_, values), grad = jax.value_and_grad(total, has_aux=True)(x)
    return values, grad
