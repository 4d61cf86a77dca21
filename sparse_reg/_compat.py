"""The only import of :mod:`array_api_compat` in the package.

Keeping the dependency behind one module means a change of its API touches one file, and the rest of
the code reads as plain array-API code.
"""

from __future__ import annotations

from array_api_compat import (
    array_namespace,
    device,
    is_array_api_obj,
    is_cupy_array,
    is_jax_array,
    is_lazy_array,
    is_numpy_array,
    is_torch_array,
)

__all__ = [
    "array_namespace",
    "device",
    "is_array_api_obj",
    "is_cupy_array",
    "is_jax_array",
    "is_lazy_array",
    "is_numpy_array",
    "is_torch_array",
    "library_of",
]


def library_of(x: object) -> str:
    """Name the array library that owns ``x``.

    Returns one of ``"numpy"``, ``"torch"``, ``"cupy"``, ``"jax"``, or the top-level module name of
    any other array-API library (``"array_api_strict"``, ...).
    """
    if is_numpy_array(x):
        return "numpy"
    if is_torch_array(x):
        return "torch"
    if is_cupy_array(x):
        return "cupy"
    if is_jax_array(x):
        return "jax"
    return type(x).__module__.split(".")[0]
