"""Checks on the arrays passed to the public functions, with messages that name the argument."""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

from sparse_reg._compat import is_traced
from sparse_reg._numerics import Array


def real_scalar(value: Any) -> float | None:
    """The value of a real, non-boolean scalar held on the host, else ``None``.

    Python ``int`` and ``float``, NumPy integer and floating scalars, and 0-D NumPy arrays of such
    a dtype all count, so ``lam=np.float32(-1)`` is checked exactly like ``lam=-1.0``. Booleans
    (``True``, ``np.True_``) are never numbers.
    """
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        return float(value)
    return None


def _dtype_name(dtype: object) -> str:
    """``int64`` rather than ``torch.int64`` or ``array_api_strict.int64``."""
    return str(dtype).rsplit(".", 1)[-1]


def check_logits_and_labels(
    logits: Array, labels: Array, xp: ModuleType, host_labels: np.ndarray | None = None
) -> bool:
    """Validate shapes, dtypes and the label range of a ``(logits, labels)`` pair.

    The label range needs the values, so it cannot be checked for traced arrays (inside
    ``jax.jit``, ``torch.compile`` or a ``torch.func`` transform; see
    :func:`~sparse_reg._compat.is_traced`), whose values do not exist yet or would break a
    compiled graph; then this returns ``False`` and the caller marks such rows with
    :func:`nan_where_labels_invalid`. ``host_labels`` is an optional NumPy view of
    ``labels`` where they live in host memory (a CPU tensor's ``.numpy()``), which makes the
    check cheap.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D with shape (N, C); got shape {tuple(logits.shape)}")
    if not _is_kind(xp, logits.dtype, "real floating"):
        raise TypeError(
            "logits must be floating point (float16, bfloat16, float32 or float64); "
            f"got {_dtype_name(logits.dtype)}"
        )
    n, num_classes = logits.shape
    if num_classes < 2:
        raise ValueError(f"logits must have at least 2 classes (C >= 2); got C={num_classes}")
    if not _is_kind(xp, labels.dtype, "integral"):
        raise TypeError(
            "labels must be an integer array of class indices in [0, C); "
            f"got dtype {_dtype_name(labels.dtype)}"
        )
    if tuple(labels.shape) != (n,):
        raise ValueError(
            f"labels must have shape (N,) = ({n},) to match logits; got {tuple(labels.shape)}"
        )
    if n == 0:
        return True
    out_of_range = _labels_out_of_range(labels, num_classes, xp, host_labels)
    if out_of_range is None:
        return False
    if out_of_range:
        low, high = int(xp.min(labels)), int(xp.max(labels))
        raise ValueError(
            f"labels must lie in [0, C) = [0, {num_classes}); got values from {low} to {high}"
        )
    return True


def nan_where_labels_invalid(values: Array, labels: Array, num_classes: int, xp: ModuleType) -> Array:
    """``values`` (shape ``(N,)`` or ``(N, C)``) with NaN in every row whose label is outside
    ``[0, C)``: what a traced call, which cannot raise on values, returns for such a row."""
    valid = (labels >= 0) & (labels < num_classes)
    return xp.where(valid if values.ndim == 1 else valid[:, None], values, xp.full_like(values, xp.nan))


@cache
def _is_kind(xp: ModuleType, dtype: Any, kind: str) -> bool:
    """``xp.isdtype(dtype, kind)``, remembered: a call's dtypes rarely change between calls."""
    return bool(xp.isdtype(dtype, kind))


def _labels_out_of_range(
    labels: Array, num_classes: int, xp: ModuleType, host: np.ndarray | None
) -> bool | None:
    """Whether a label lies outside ``[0, C)``; ``None`` for traced arrays, which have no values.

    Host memory is checked with one reduction: viewed as unsigned integers of the same width,
    negative labels become huge, so ``max >= C`` catches both ends. Other memory costs one
    reduction and one read back.
    """
    if host is None and isinstance(labels, np.ndarray):
        host = labels
    if host is not None:
        return bool(np.maximum.reduce(host.view(host.dtype.str.replace("i", "u"))) >= num_classes)
    if is_traced(labels):
        return None
    try:
        return bool(xp.any((labels < 0) | (labels >= num_classes)))
    except TypeError:  # JAX's ConcretizationTypeError: a tracer has no value to check
        return None
