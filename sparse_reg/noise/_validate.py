"""Argument checks shared by the noise generators; every message names the argument at fault."""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["check_labels", "check_matrix", "check_rate", "check_seed"]


def check_labels(labels: object, num_classes: int | None = None) -> tuple[np.ndarray, int]:
    """Return ``labels`` as a 1-D int64 array and the number of classes.

    Parameters
    ----------
    labels : array_like
        Clean labels: a non-empty 1-D array of integers in ``[0, num_classes)``.
    num_classes : int or None
        Number of classes; ``None`` infers ``labels.max() + 1``.

    Returns
    -------
    labels : numpy.ndarray
        A new int64 array (never a view of the input).
    num_classes : int
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must have an integer dtype, got {arr.dtype}")
    if arr.size == 0:
        raise ValueError("labels is empty")
    arr = arr.astype(np.int64, copy=True)
    if num_classes is not None:
        num_classes = _check_num_classes(num_classes)
    low = int(arr.min())
    if low < 0:
        index = int(np.argmin(arr))
        raise ValueError(f"labels must be non-negative; found {low} at index {index}")
    high = int(arr.max())
    if num_classes is None:
        num_classes = high + 1
    elif high >= num_classes:
        index = int(np.argmax(arr))
        raise ValueError(f"labels must lie in [0, {num_classes}); found {high} at index {index}")
    return arr, num_classes


def _check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return int(num_classes)


def check_rate(rate: object, name: str = "rate") -> float:
    """Return ``rate`` as a float, raising unless it is a real number in ``[0, 1)``."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1), got {type(rate).__name__}")
    value = float(rate)
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {rate!r}")
    return value


def check_seed(seed: object) -> int:
    """Return ``seed`` as a non-negative int (the value recorded in the result)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return int(seed)


def check_matrix(matrix: object, convention: str, atol: float = 1e-8) -> np.ndarray:
    """Return a row-stochastic float64 copy of ``matrix``.

    Parameters
    ----------
    matrix : array_like
        Square matrix with non-negative entries. Under ``convention="row"``, ``matrix[i, j]`` is
        ``P(noisy=j | clean=i)`` and each row sums to 1; under ``"column"`` (cleanlab's
        ``noise_matrix[noisy, clean]``) each column sums to 1 and the matrix is transposed.
    convention : {"row", "column"}
    atol : float
        Allowed deviation of each sum from 1.
    """
    if convention not in ("row", "column"):
        raise ValueError(f"convention must be 'row' or 'column', got {convention!r}")
    try:
        arr = np.array(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"matrix must be a numeric square array: {exc}") from None
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"matrix must be a non-empty square 2-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("matrix has non-finite entries")
    if np.any(arr < 0):
        i, j = np.argwhere(arr < 0)[0]
        raise ValueError(f"matrix has a negative entry {float(arr[i, j])!r} at [{i}, {j}]")
    axis, what = (1, "rows") if convention == "row" else (0, "columns")
    sums = arr.sum(axis=axis)
    bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"matrix {what} must sum to 1 (convention={convention!r}); "
            f"{what[:-1]} {k} sums to {float(sums[k])!r}"
        )
    return arr if convention == "row" else np.ascontiguousarray(arr.T)
