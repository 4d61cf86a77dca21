"""The in-memory dataset record every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """An image classification dataset held in memory.

    Attributes
    ----------
    name : str
        Dataset name, e.g. ``"cifar10"``; derived datasets carry a suffix
        (``"cifar10-lt-exp-0.01"``).
    x_train, x_test : numpy.ndarray
        uint8 images of shape ``(N, channels, H, W)``, pixel values 0..255 (or float32 feature
        vectors as ``(N, 1, 1, D)``).
    y_train, y_test : numpy.ndarray
        int64 labels in ``[0, num_classes)``.
    num_classes : int
    class_names : tuple of str
    mean, std : tuple of float
        Per-channel normalisation constants on the ``[0, 1]`` pixel scale (``x / 255``).
    source : str
        Directory the files were read from, or ``"bundled"`` for data shipped with the package.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            # float32: feature vectors of the trainer's --data files, as (N, 1, 1, D).
            if x.dtype not in (np.uint8, np.float32) or x.ndim != 4:
                raise ValueError(f"x_{split} must be uint8 or float32 (N, C, H, W), got {x.dtype} {x.shape}")
            if y.dtype != np.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"y_{split} must be int64 of length {x.shape[0]}")
        if len(self.class_names) != self.num_classes:
            raise ValueError("class_names must have num_classes entries")
