"""Checks on the arrays passed to the public functions, with messages that name the argument."""

from __future__ import annotations

from types import ModuleType

from sparse_reg._numerics import Array


def _dtype_name(dtype: object) -> str:
    """``int64`` rather than ``torch.int64`` or ``array_api_strict.int64``."""
    return str(dtype).rsplit(".", 1)[-1]


def check_logits_and_labels(logits: Array, labels: Array, xp: ModuleType) -> None:
    """Validate shapes, dtypes and the label range of a ``(logits, labels)`` pair.

    The label range needs the values, so it is skipped for traced arrays (inside ``jax.jit``),
    whose values do not exist yet.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D with shape (N, C); got shape {tuple(logits.shape)}")
    if not xp.isdtype(logits.dtype, "real floating"):
        raise TypeError(
            "logits must be floating point (float16, bfloat16, float32 or float64); "
            f"got {_dtype_name(logits.dtype)}"
        )
    n, num_classes = logits.shape
    if num_classes < 2:
        raise ValueError(f"logits must have at least 2 classes (C >= 2); got C={num_classes}")
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(
            "labels must be an integer array of class indices in [0, C); "
            f"got dtype {_dtype_name(labels.dtype)}"
        )
    if tuple(labels.shape) != (n,):
        raise ValueError(
            f"labels must have shape (N,) = ({n},) to match logits; got {tuple(labels.shape)}"
        )
    if n == 0:
        return
    # One reduction and one read back to the host per call; the values for the message only on error.
    try:
        out_of_range = bool(xp.any((labels < 0) | (labels >= num_classes)))
    except TypeError:  # JAX's ConcretizationTypeError: a tracer has no value to check
        return
    if out_of_range:
        low, high = int(xp.min(labels)), int(xp.max(labels))
        raise ValueError(
            f"labels must lie in [0, C) = [0, {num_classes}); got values from {low} to {high}"
        )
