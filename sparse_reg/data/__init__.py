"""Datasets from their standard files, as uint8 NumPy arrays.

:func:`load` dispatches on the dataset name; each loader validates the files' structure and,
by default, their published checksums, and raises
:class:`~sparse_reg.errors.DatasetNotFoundError` (saying how to get the data) or
:class:`~sparse_reg.errors.CorruptDatasetError` (naming the file and what was expected: also for a
directory, FIFO or device where a file belongs). Every read is bounded before memory is allocated:
by the file's size, or for a gzip file by the size its header declares, so a small file that
expands to gigabytes is refused, not decompressed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._dataset import Dataset
from .cifar import load_cifar10, load_cifar100
from .digits import load_digits
from .longtail import long_tailed, long_tailed_counts
from .mnist import load_fashion_mnist, load_mnist

__all__ = [
    "DATASETS",
    "Dataset",
    "load",
    "load_cifar10",
    "load_cifar100",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "long_tailed",
    "long_tailed_counts",
]

#: Names accepted by :func:`load`.
DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")

_LOADERS = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
}


def load(name: str, data_dir: str | Path | None = None, **kw: Any) -> Dataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100"}
    data_dir : str or path, optional
        Where the files are; each loader documents its default. Ignored by ``"digits"``.
    **kw
        Passed to the loader (e.g. ``verify=False``).

    Returns
    -------
    Dataset
    """
    if name == "digits":
        if data_dir is not None:
            raise ValueError("digits ships with sparse_reg; data_dir must be None")
        return load_digits(**kw)
    try:
        loader = _LOADERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}") from None
    return loader(data_dir, **kw)
