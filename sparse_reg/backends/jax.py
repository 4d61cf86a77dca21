"""JAX hook: autograd for value-only user losses (the array-API core runs on JAX unchanged)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["value_and_grad"]


def value_and_grad(fn: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
    """Value and gradient of a scalar function by :func:`jax.value_and_grad`."""
    return jax.value_and_grad(fn)(x)
