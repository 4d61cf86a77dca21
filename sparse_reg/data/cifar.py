"""CIFAR-10 and CIFAR-100 from the standard python pickle directories."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptDatasetError, DatasetNotFoundError
from ._checksum import Known, verify
from ._dataset import Dataset
from ._files import file_kind, read_bytes
from ._pickle import load_pickle

__all__ = ["CIFAR_ROOT", "load_cifar10", "load_cifar100"]

#: Default parent directory of ``cifar-10-batches-py/`` and ``cifar-100-python/``.
CIFAR_ROOT = Path("/usr/share/datasets")

_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class _Spec:
    name: str
    folder: str
    archive: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: str
    names_key: str
    num_classes: int
    md5: dict[str, str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_CIFAR10 = _Spec(
    name="cifar10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test="test_batch",
    meta="batches.meta",
    label_key="labels",
    names_key="label_names",
    num_classes=10,
    md5={
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    # The official code's constants (per-channel statistics of the training set).
    mean=(0.49139968, 0.48215827, 0.44653124),
    std=(0.24703233, 0.24348505, 0.26158768),
)

_CIFAR100 = _Spec(
    name="cifar100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train=("train",),
    test="test",
    meta="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
    md5={
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)


def load_cifar10(data_dir: str | Path | None = None, *, verify: bool = True) -> Dataset:
    """Load CIFAR-10 from the python version (``cifar-10-batches-py/``).

    Parameters
    ----------
    data_dir : str or path, optional
        The ``cifar-10-batches-py`` directory itself or its parent; defaults to
        ``/usr/share/datasets``. It must hold ``data_batch_1`` ... ``data_batch_5``,
        ``test_batch`` and ``batches.meta`` (the extracted ``cifar-10-python.tar.gz`` from
        https://www.cs.toronto.edu/~kriz/cifar.html).
    verify : bool
        Check each file against its published MD5. Structural checks (keys, array shapes and
        dtypes, label range) always apply.

    Returns
    -------
    Dataset
        ``x`` of shape ``(N, 3, 32, 32)``; ``mean``/``std`` are the official code's constants.

    Raises
    ------
    DatasetNotFoundError
        The directory or a file is missing.
    CorruptDatasetError
        A file cannot be unpickled, has the wrong structure, or (with ``verify``) is not the
        standard file.
    """
    return _load(_CIFAR10, data_dir, verify)


def load_cifar100(data_dir: str | Path | None = None, *, verify: bool = True) -> Dataset:
    """Load CIFAR-100 (fine labels) from the python version (``cifar-100-python/``).

    ``data_dir`` is the ``cifar-100-python`` directory or its parent (default
    ``/usr/share/datasets``); it must hold ``train``, ``test`` and ``meta``. Otherwise as
    :func:`load_cifar10`; ``mean``/``std`` are the paper's CIFAR-100 constants.
    """
    return _load(_CIFAR100, data_dir, verify)


def _resolve(spec: _Spec, data_dir: str | Path | None) -> Path:
    given = Path(data_dir).expanduser() if data_dir is not None else CIFAR_ROOT
    for candidate in (given, given / spec.folder):
        if os.path.lexists(candidate / spec.meta):
            return candidate
    directory = given if given.name == spec.folder else given / spec.folder
    files = ", ".join((*spec.train, spec.test, spec.meta))
    kind = file_kind(directory)
    if kind not in (None, "a directory"):
        raise CorruptDatasetError(f"{spec.name}: {directory} is {kind}, expected a directory")
    where = "does not exist" if kind is None else f"has no {spec.meta}"
    raise DatasetNotFoundError(
        f"{spec.name}: {directory} {where}. Download the CIFAR python version "
        f"({spec.archive}) from {_URL} and extract it, then pass the extracted directory or its "
        f"parent as data_dir. Expected layout: {directory}/{{{files}}}."
    )


def _read(spec: _Spec, directory: Path, name: str, check: bool) -> dict[str, Any]:
    path = directory / name
    if not os.path.lexists(path):
        files = ", ".join((*spec.train, spec.test, spec.meta))
        raise DatasetNotFoundError(
            f"{spec.name} file {path} is missing. Re-extract {spec.archive} (from {_URL}). "
            f"Expected layout: {directory}/{{{files}}}."
        )
    content = read_bytes(path)
    if check:
        verify(path, content, Known(content_md5=spec.md5[name]))
    return load_pickle(path, content)


def _field(path: Path, batch: dict[str, Any], key: str) -> Any:
    try:
        return batch[key]
    except KeyError:
        raise CorruptDatasetError(f"{path}: missing key {key!r} (found {sorted(batch)})") from None


def _split(spec: _Spec, directory: Path, names: Sequence[str], check: bool) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in names:
        path = directory / name
        batch = _read(spec, directory, name, check)
        data = _field(path, batch, "data")
        if not (
            isinstance(data, np.ndarray)
            and data.dtype == np.uint8
            and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32
        ):
            shape = getattr(data, "shape", None)
            dtype = getattr(data, "dtype", type(data).__name__)
            raise CorruptDatasetError(
                f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {dtype} {shape}"
            )
        try:
            y = np.asarray(_field(path, batch, spec.label_key))
        except ValueError as exc:
            raise CorruptDatasetError(f"{path}: {spec.label_key!r} is not a label list") from exc
        if y.shape != (data.shape[0],) or not np.issubdtype(y.dtype, np.integer):
            raise CorruptDatasetError(
                f"{path}: {spec.label_key!r} must be {data.shape[0]} integers, got {y.dtype} {y.shape}"
            )
        if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise CorruptDatasetError(f"{path}: label {bad} out of range [0, {spec.num_classes})")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(y.astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _class_names(spec: _Spec, directory: Path, check: bool) -> tuple[str, ...]:
    path = directory / spec.meta
    raw = _field(path, _read(spec, directory, spec.meta, check), spec.names_key)
    try:
        names = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw)
    except (TypeError, UnicodeDecodeError) as exc:
        raise CorruptDatasetError(f"{path}: {spec.names_key!r} is not a list of names") from exc
    if len(names) != spec.num_classes:
        raise CorruptDatasetError(
            f"{path}: {spec.names_key!r} has {len(names)} names, expected {spec.num_classes}"
        )
    return names


def _load(spec: _Spec, data_dir: str | Path | None, check: bool) -> Dataset:
    directory = _resolve(spec, data_dir)
    class_names = _class_names(spec, directory, check)
    x_train, y_train = _split(spec, directory, spec.train, check)
    x_test, y_test = _split(spec, directory, (spec.test,), check)
    return Dataset(
        name=spec.name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=spec.num_classes,
        class_names=class_names,
        mean=spec.mean,
        std=spec.std,
        source=str(directory),
    )
