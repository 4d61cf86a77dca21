"""The user's own data for ``--data PATH.npz``: images or feature vectors with labels.

The file is a NumPy ``.npz`` archive (``numpy.savez`` or ``numpy.savez_compressed``), read with
``allow_pickle=False``: loading it never runs code. Its keys:

* ``x_train`` (needed): images ``(N, H, W)`` or ``(N, C, H, W)``, uint8 0..255; or features
  ``(N, D)``, floating point, finite;
* ``y_train`` (needed): ``(N,)`` integer labels in ``[0, K)``;
* ``x_test`` (optional): as ``x_train``, with the same shape after the first axis;
* ``y_test`` (with ``x_test``): ``(M,)`` integer labels in ``[0, K)``;
* ``class_names`` (optional): ``(K,)`` strings.

``K`` is the number of entries of ``class_names`` if given, else the largest label plus one, which
may then be at most the number of samples (train and test): a class needs a sample unless
``class_names`` declares it. ``K`` is at most :data:`MAX_CLASSES` either way, as the noise
models hold ``K x K`` matrices. Labels are checked against these bounds before anything is
sized by them. Each member's size is checked against its zip entry, its compressed bytes and its
``.npy`` header before it is read, and the arrays may declare at most :data:`MAX_NPZ_BYTES`
(4 GiB) in all.
Without ``x_test``/``y_test`` a fixed 20% of the training samples (chosen with seed 0) is held
out as the test set. Features are normalised by their overall mean and standard deviation
(standardise them per feature first if their scales differ); they reach the model as
``(N, 1, 1, D)`` "images", which only the ``mlp`` model takes.
The label noise is drawn on ``y_train`` exactly as on a preset's dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sparse_reg.data import Dataset
from sparse_reg.data._npz import MAX_NPZ_BYTES, read_npz
from sparse_reg.errors import CorruptDatasetError, DatasetNotFoundError

__all__ = ["HOLDOUT_FRACTION", "KEYS", "MAX_CLASSES", "MAX_NPZ_BYTES", "is_features", "load_npz"]

#: Keys a ``--data`` file may hold.
KEYS: tuple[str, ...] = ("x_train", "y_train", "x_test", "y_test", "class_names")
#: Share of the training samples held out as the test set when the file has none.
HOLDOUT_FRACTION = 0.2
_HOLDOUT_SEED = 0
#: Most classes a file may have (``K x K`` float64 noise matrices of 800 MB at most).
MAX_CLASSES = 10_000

_Fail = Callable[[str], CorruptDatasetError]


def is_features(x: np.ndarray) -> bool:
    """Whether ``x`` holds feature vectors (floating point) rather than uint8 images."""
    return x.dtype != np.uint8


def load_npz(path: str | Path, *, max_bytes: int = MAX_NPZ_BYTES) -> Dataset:
    """Read and validate a ``--data`` file, within the bounds of the module docstring.

    Parameters
    ----------
    path : str or path
    max_bytes : int
        Most bytes of array data the archive may declare in all (4 GiB by default).

    Returns
    -------
    Dataset
        Images as ``(N, C, H, W)`` uint8; features as ``(N, 1, 1, D)`` float32. ``mean``/``std``
        are of the training part (on the ``[0, 1]`` scale for images). Named ``npz:<stem>``.

    Raises
    ------
    sparse_reg.errors.DatasetNotFoundError
        The file does not exist.
    sparse_reg.errors.CorruptDatasetError
        It is not a readable ``.npz``, a member's declared size exceeds a bound or disagrees with
        its zip entry, or a key, shape, dtype or label is not as above (a label of ``K`` or more
        included); the message names the file, the key or member, the value found and what was
        expected.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"--data file {str(path)!r} does not exist")
    arrays = read_npz(path, name=f"--data file {str(path)!r}", max_bytes=max_bytes)

    def fail(message: str) -> CorruptDatasetError:
        return CorruptDatasetError(f"--data file {str(path)!r}: {message}")

    unknown = sorted(set(arrays) - set(KEYS))
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(KEYS)}")
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise fail(
                f"the key {key!r} is missing; it needs x_train and y_train (and optionally x_test, y_test)"
            )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise fail("x_test and y_test go together: give both or neither")
    x_train = _inputs(arrays["x_train"], "x_train", fail)
    x_test = _inputs(arrays["x_test"], "x_test", fail) if "x_test" in arrays else None
    names = _names(arrays, fail)
    # Labels are bounded before anything is sized by them (class names, one-hot, bincount).
    samples = x_train.shape[0] + (0 if x_test is None else x_test.shape[0])
    bound = _class_bound(names, samples)
    y_train = _labels(arrays["y_train"], "y_train", x_train.shape[0], fail, bound)
    if x_test is not None:
        if x_test.shape[1:] != x_train.shape[1:] or x_test.dtype != x_train.dtype:
            raise fail(
                f"x_test has samples of shape {arrays['x_test'].shape[1:]} and dtype "
                f"{arrays['x_test'].dtype}; expected those of x_train, {arrays['x_train'].shape[1:]} "
                f"and {arrays['x_train'].dtype}"
            )
        y_test = _labels(arrays["y_test"], "y_test", x_test.shape[0], fail, bound)
    else:
        if x_train.shape[0] < 2:
            raise fail("x_train needs at least 2 samples to hold out a test set (or give x_test, y_test)")
        order = np.random.default_rng(_HOLDOUT_SEED).permutation(x_train.shape[0])
        held = max(1, round(HOLDOUT_FRACTION * x_train.shape[0]))
        test, train = np.sort(order[:held]), np.sort(order[held:])
        x_train, y_train, x_test, y_test = x_train[train], y_train[train], x_train[test], y_train[test]
    largest = int(max(y_train.max(), y_test.max())) + 1
    class_names = names if names is not None else tuple(str(k) for k in range(largest))
    if len(class_names) < 2:
        raise fail(f"the labels must span at least 2 classes; got {len(class_names)}")
    scale = 1.0 if is_features(x_train) else 255.0
    values = x_train.astype(np.float64) / scale
    axes = (0, 2, 3)
    std = values.std(axis=axes)
    return Dataset(
        name=f"npz:{path.stem}",
        x_train=np.ascontiguousarray(x_train),
        y_train=y_train,
        x_test=np.ascontiguousarray(x_test),
        y_test=y_test,
        num_classes=len(class_names),
        class_names=class_names,
        mean=tuple(float(v) for v in values.mean(axis=axes)),
        # A constant input would divide by zero: leave it unscaled.
        std=tuple(float(v) if v > 0 else 1.0 for v in std),
        source=str(path),
    )


def _names(arrays: dict[str, np.ndarray], fail: _Fail) -> tuple[str, ...] | None:
    """The ``class_names`` of the file, if any: a 1-D array of at most :data:`MAX_CLASSES` strings."""
    if "class_names" not in arrays:
        return None
    names = arrays["class_names"]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise fail(f"class_names must be a 1-D array of strings; got {names.dtype} of shape {names.shape}")
    if names.size > MAX_CLASSES:
        raise fail(f"class_names has {names.size} names; expected at most {MAX_CLASSES} classes")
    return tuple(str(n) for n in names.tolist())


class _ClassBound(NamedTuple):
    """Labels must be below ``limit``; ``why`` says where the limit comes from."""

    limit: int
    why: str


def _class_bound(names: tuple[str, ...] | None, samples: int) -> _ClassBound:
    """What labels must stay below: the number of ``names``, else that of samples and MAX_CLASSES."""
    if names is not None:
        return _ClassBound(len(names), f"class_names has {len(names)} names")
    return _ClassBound(
        min(samples, MAX_CLASSES),
        f"without class_names there are at most as many classes as samples ({samples}), and at "
        f"most {MAX_CLASSES}; give class_names to declare classes without samples",
    )


def _inputs(x: np.ndarray, key: str, fail: _Fail) -> np.ndarray:
    if x.dtype == np.uint8:
        if x.ndim == 3:
            return x[:, None]
        if x.ndim == 4:
            return x
        raise fail(f"{key} holds uint8 images of shape {x.shape}; expected (N, H, W) or (N, C, H, W)")
    if x.dtype.kind == "f":
        if x.ndim != 2:
            raise fail(f"{key} holds {x.dtype} features of shape {x.shape}; expected (N, D)")
        if not np.isfinite(x).all():
            raise fail(f"{key} holds NaN or infinite values")
        return x.astype(np.float32)[:, None, None, :]
    raise fail(f"{key} has dtype {x.dtype}; expected uint8 images (0..255) or floating-point features")


def _labels(y: np.ndarray, key: str, n: int, fail: _Fail, bound: _ClassBound) -> np.ndarray:
    if y.dtype.kind not in "iu":
        raise fail(f"{key} has dtype {y.dtype}; expected integer class labels")
    if y.shape != (n,):
        raise fail(f"{key} has shape {y.shape}; expected ({n},), one label per sample of x_{key[2:]}")
    if n == 0:
        raise fail(f"{key} is empty")
    if y.min() < 0:
        raise fail(f"{key} holds the negative label {int(y.min())}; labels must be in [0, K)")
    if y.max() >= bound.limit:
        at = int(np.argmax(y))
        raise fail(
            f"{key} holds the label {int(y[at])} (at index {at}); expected labels in "
            f"[0, {bound.limit}): {bound.why}"
        )
    return y.astype(np.int64)
