"""Checks on the arrays passed to the public functions, with messages that name the argument."""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

from sparse_reg._compat import is_traced
from sparse_reg._numerics import Array, nan_rows


def check_flag(name: str, value: Any) -> bool:
    """``value`` as a bool, where it is one (``True``, ``False``, ``np.True_``, ``np.False_``).

    Raises
    ------
    TypeError
        Anything else (a string such as ``"no"``, a number, ``None``), which would otherwise be
        read by its truth value.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__})")


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


def refuse_meta(x: Any, argument: str) -> None:
    """Refuse a tensor on torch's ``meta`` device: it has a shape and no values to compute with."""
    if getattr(x, "is_meta", False):
        raise ValueError(
            f"{argument} is on device 'meta', which holds no values; sparse_reg computes on the "
            f"CPU or a CUDA device: pass {argument}.to('cpu') or a CUDA tensor"
        )


#: Per number of logits dimensions: the shape ``labels`` must have, in words, and how to get it.
_LABEL_SHAPES = {1: "()", 2: "(N,)"}


def check_logits_and_target(logits: Array, labels: Array, xp: ModuleType) -> bool:
    """Validate the shapes and dtypes of ``logits`` and ``labels``; return whether ``labels`` are
    class probabilities (floating point, the logits' shape) rather than class indices.

    Logits are ``(C,)`` (one sample), ``(N, C)`` or ``(N, C, d1, ..., dk)`` with the classes on
    axis 1, as :func:`torch.nn.functional.cross_entropy` takes them; class indices have the
    logits' shape without the class axis.
    """
    if type(logits) is not np.ndarray:  # SparseRegLoss reaches this without resolve_call
        refuse_meta(logits, "logits")
        refuse_meta(labels, "labels")
    # Each attribute of a tensor is read once: every read builds a Python object.
    shape, label_shape, label_dtype = tuple(logits.shape), tuple(labels.shape), labels.dtype
    ndim = len(shape)
    if ndim == 0:
        raise ValueError(
            "logits must have shape (C,), (N, C) or (N, C, d1, ..., dk); got a 0-D array"
        )
    if not _is_supported_float(xp, logits.dtype):
        raise TypeError(
            f"logits must be floating point ({SUPPORTED_FLOATS}); got {_dtype_name(logits.dtype)}"
        )
    num_classes = shape[0] if ndim == 1 else shape[1]
    if num_classes < 2:
        raise ValueError(f"logits must have at least 2 classes (C >= 2); got C={num_classes}")
    if label_shape == shape and _is_kind(xp, label_dtype, "real floating"):
        return True
    if not _is_kind(xp, label_dtype, "integral"):
        raise TypeError(
            "labels must be an integer array of class indices in [0, C), or floating-point class "
            f"probabilities of the logits' shape {shape}; got dtype {_dtype_name(label_dtype)} "
            f"and shape {label_shape}"
        )
    expected = shape[:1] + shape[2:] if ndim > 1 else ()
    if label_shape != expected:
        words = _LABEL_SHAPES.get(ndim, "(N, d1, ..., dk)")
        raise ValueError(
            f"labels must have shape {words} = {expected} to match logits of shape {shape}; "
            f"got {label_shape}"
        )
    return False


def check_label_values(
    labels: Array, num_classes: int, xp: ModuleType, host: np.ndarray | None, ignore_index: int
) -> tuple[bool, bool]:
    """Check that class indices ``labels`` (shape ``(N,)``) lie in ``[0, C)`` or equal ``ignore_index``.

    Returns ``(checked, ignored)``: ``checked`` is ``False`` for traced arrays (inside
    ``jax.jit``), whose values do not exist yet (the caller then marks rows with an invalid label
    by :func:`nan_where_labels_invalid` and must assume ignored labels may be present);
    ``ignored`` says whether some label equals ``ignore_index``. ``host`` is an optional NumPy
    view of ``labels`` where they live in host memory (a CPU tensor's ``.numpy()``), which makes
    the check cheap; without an ignored label in the batch, the check costs what it did without
    ``ignore_index``: one reduction (and one read back from a device).
    """
    if labels.shape[0] == 0:
        return True, False
    out_of_range = _labels_out_of_range(labels, num_classes, xp, host)
    if out_of_range is None:
        return False, True
    if not out_of_range:  # every label is a class; it may still be ignore_index when that is one
        if not 0 <= ignore_index < num_classes:
            return True, False
        return True, _any(labels == ignore_index, xp, host, lambda h: h == ignore_index)
    if _any(((labels < 0) | (labels >= num_classes)) & (labels != ignore_index), xp, host,
            lambda h: ((h < 0) | (h >= num_classes)) & (h != ignore_index)):
        kept = host[host != ignore_index] if host is not None else labels[labels != ignore_index]
        low, high = (int(kept.min()), int(kept.max())) if host is not None else (
            int(xp.min(kept)), int(xp.max(kept)))
        raise ValueError(
            f"labels must lie in [0, C) = [0, {num_classes}) or equal ignore_index={ignore_index}; "
            f"got values from {low} to {high}"
        )
    return True, True


def _any(condition: Array, xp: ModuleType, host: np.ndarray | None, on_host: Any) -> bool:
    """``any(condition)``, on the host view when there is one."""
    if host is not None:
        return bool(np.any(on_host(host)))
    return bool(xp.any(condition))


def check_probabilities(targets: Array, xp: ModuleType, host: np.ndarray | None) -> None:
    """Class-probability ``labels`` must be non-negative (checked unless traced)."""
    if host is None and is_traced(targets):  # no values yet, or reading them breaks the graph
        return
    try:
        negative = bool(np.any(host < 0)) if host is not None else bool(xp.any(targets < 0))
    except TypeError:  # JAX's ConcretizationTypeError: a tracer has no value to check
        return
    if negative:
        low = float(host.min()) if host is not None else float(xp.min(targets))
        raise ValueError(
            f"labels given as class probabilities must be >= 0; got a smallest entry of {low}"
        )


def nan_where_labels_invalid(values: Array, labels: Array, num_classes: int, xp: ModuleType) -> Array:
    """``values`` (shape ``(N,)`` or ``(N, C)``) with NaN in every row whose label is outside
    ``[0, C)``: what a traced call, which cannot raise on values, returns for such a row.

    The rows are multiplied by a factor, 1 or NaN, rather than replaced with ``where``: autograd
    sends no gradient through the branch ``where`` drops, so a replaced row would have a NaN
    value and a finite gradient (that of the penalty alone). A product passes NaN to the row's
    gradient too.
    """
    return nan_rows(values, (labels >= 0) & (labels < num_classes), xp)


#: The floating dtypes the formulas run in, in words: every path computes in float32 or float64.
SUPPORTED_FLOATS = "float16, bfloat16, float32 or float64"


def _is_supported_float(xp: ModuleType, dtype: Any) -> bool:
    """Whether ``dtype`` is a real floating dtype every path computes in: float128 (long double),
    which NumPy counts as real floating, is not one (no compiled path or GPU has it)."""
    if type(dtype).__module__ == "torch":  # a torch.dtype: torch has no dtype wider than 64 bits
        return dtype.is_floating_point
    return _is_cached_supported_float(xp, dtype)


def _is_kind(xp: ModuleType, dtype: Any, kind: str) -> bool:
    """``xp.isdtype(dtype, kind)``; remembered except for torch dtypes, which answer from their
    own attributes, and which torch.compile traces: it warns on every functools cache it meets."""
    if type(dtype).__module__ == "torch":
        return bool(xp.isdtype(dtype, kind))
    return _is_cached_kind(xp, dtype, kind)


@cache
def _is_cached_supported_float(xp: ModuleType, dtype: Any) -> bool:
    return _is_cached_kind(xp, dtype, "real floating") and xp.finfo(dtype).bits <= 64


@cache
def _is_cached_kind(xp: ModuleType, dtype: Any, kind: str) -> bool:
    # a call's dtypes rarely change between calls
    return bool(xp.isdtype(dtype, kind))


def _labels_out_of_range(
    labels: Array, num_classes: int, xp: ModuleType, host: np.ndarray | None
) -> bool | None:
    """Whether a label lies outside ``[0, C)`` (at least one label is given); ``None`` for traced
    arrays, which have no values.

    Host memory is checked with one pass: viewed as unsigned integers of the same width, negative
    labels become huge, so ``max >= C`` catches both ends. The maximum is read at ``argmax``,
    which costs a third of ``np.maximum.reduce`` on a small batch (no ufunc machinery). Other
    memory costs one reduction and one read back.
    """
    if host is None and isinstance(labels, np.ndarray):
        host = labels
    if host is not None:
        unsigned = host.view(_unsigned(host.dtype))
        return unsigned.item(unsigned.argmax()) >= num_classes
    if is_traced(labels):
        return None
    try:
        return bool(xp.any((labels < 0) | (labels >= num_classes)))
    except TypeError:  # JAX's ConcretizationTypeError: a tracer has no value to check
        return None


@cache
def _unsigned(dtype: np.dtype) -> np.dtype:
    """The unsigned integer dtype of ``dtype``'s width (``dtype`` itself when unsigned), made once:
    building it from its string on every call cost as much as the reduction."""
    return np.dtype(dtype.str.replace("i", "u"))
