"""scikit-learn's bundled 8x8 digits, as a small offline stand-in for MNIST."""

from __future__ import annotations

import numpy as np

from ._dataset import Dataset

__all__ = ["SPLIT_SEED", "TEST_FRACTION", "load_digits"]

#: Fraction of the 1,797 images held out as the test set.
TEST_FRACTION = 0.3
#: ``random_state`` of the stratified split.
SPLIT_SEED = 0


def load_digits() -> Dataset:
    """Load scikit-learn's digits (1,797 images of 8x8 pixels, 10 classes).

    Pixel values 0..16 are scaled to uint8 by ``round(v * 255 / 16)``. The split is fixed:
    ``sklearn.model_selection.train_test_split(test_size=0.3, stratify=y, random_state=0)``,
    giving 1,257 training and 540 test images. ``mean``/``std`` are computed from the training
    images on the ``[0, 1]`` scale.

    Returns
    -------
    Dataset
        ``x`` of shape ``(N, 1, 8, 8)``; ``source="sklearn"``.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the digits dataset needs scikit-learn: pip install 'sparse_reg[train]'") from exc
    bunch = sk_load_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    pixels = x_train.astype(np.float64) / 255.0
    return Dataset(
        name="digits",
        x_train=np.ascontiguousarray(x_train),
        y_train=y_train,
        x_test=np.ascontiguousarray(x_test),
        y_test=y_test,
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        mean=(float(pixels.mean()),),
        std=(float(pixels.std()),),
        source="sklearn",
    )
