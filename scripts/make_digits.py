"""Write ``sparse_reg/data/digits.npz`` from scikit-learn's copy of the UCI digits.

The shipped file holds the 1,797 images with their original 0..16 pixel counts, their labels and
the fixed split ``train_test_split(test_size=0.3, stratify=y, random_state=0)`` as index arrays, so
loading the digits needs neither scikit-learn nor its split code. Run it only to regenerate the
file (``python scripts/make_digits.py``); ``tests/test_data_digits.py`` checks that the shipped
file still equals what this script produces.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

TARGET = Path(__file__).resolve().parent.parent / "sparse_reg" / "data" / "digits.npz"


def digits_arrays() -> dict[str, np.ndarray]:
    """The arrays of ``digits.npz``, computed with scikit-learn."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from sparse_reg.data.digits import SPLIT_SEED, TEST_FRACTION

    bunch = load_digits()
    y = bunch.target.astype(np.uint8)
    train_index, test_index = train_test_split(
        np.arange(y.size), test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    return {
        "images": bunch.images.astype(np.uint8),
        "labels": y,
        "train_index": train_index.astype(np.int16),
        "test_index": test_index.astype(np.int16),
    }


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


if __name__ == "__main__":
    TARGET.write_bytes(encode(digits_arrays()))
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes)")
