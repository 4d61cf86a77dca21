"""JAX hooks: host transfer and autograd for value-only user losses (the array-API core runs on JAX
unchanged)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["from_host", "host_view", "value_and_grad"]


def from_host(x: Any, device: str | None) -> Any:
    """Copy host data to JAX's default device, or to the first device of platform ``device``."""
    return jax.device_put(jax.numpy.asarray(x), jax.devices(device)[0] if device else None)


def host_view(x: Any) -> None:
    """No cheap view: JAX arrays may be traced, and reading one waits for its computation."""
    return None


def value_and_grad(per_sample: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
    """Per-sample values of ``per_sample(x)`` and the gradient of their sum, by
    :func:`jax.value_and_grad` (rows are independent, so row i of the gradient is sample i's)."""

    def total(z: Any) -> tuple[Any, Any]:
        values = per_sample(z)
        return jax.numpy.sum(values), values

    (_, values), grad = jax.value_and_grad(total, has_aux=True)(x)
    return values, grad
