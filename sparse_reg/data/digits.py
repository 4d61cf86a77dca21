"""The UCI 8x8 handwritten digits, shipped with the package as a small offline stand-in for MNIST.

The data are the 1,797 images that scikit-learn bundles as ``load_digits`` (the test set of the UCI
"Optical Recognition of Handwritten Digits" data, E. Alpaydin and C. Kaynak, 1998, licensed CC BY
4.0). They ship as ``digits.npz`` (49 kB) so that the default run needs neither scikit-learn nor
its import time; ``scripts/make_digits.py`` regenerates the file from scikit-learn and a test checks
that both agree.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from ..errors import CorruptDatasetError
from ._dataset import Dataset
from ._files import digest

__all__ = ["SPLIT_SEED", "TEST_FRACTION", "load_digits"]

#: Fraction of the 1,797 images held out as the test set.
TEST_FRACTION = 0.3
#: ``random_state`` of the stratified split.
SPLIT_SEED = 0

_FILE = "digits.npz"
_KEYS = ("images", "labels", "train_index", "test_index")
#: SHA-256 of the arrays' bytes, in the order of ``_KEYS``.
_SHA256 = "ed7e327aa335a893da1347312a9f7024077e3dc8b487096574bf2f07834760e9"


def _read_shipped() -> dict[str, np.ndarray]:
    source = resources.files(__package__).joinpath(_FILE)
    try:
        with source.open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in _KEYS}
    except (OSError, KeyError, ValueError) as exc:
        raise CorruptDatasetError(
            f"{source}: the shipped digits file cannot be read ({exc}); reinstall sparse_reg"
        ) from exc
    actual = digest(b"".join(np.ascontiguousarray(arrays[key]).tobytes() for key in _KEYS), "sha256")
    if actual != _SHA256:
        raise CorruptDatasetError(
            f"{source}: checksum mismatch (expected SHA-256 {_SHA256}, got {actual}); reinstall sparse_reg"
        )
    return arrays


def load_digits() -> Dataset:
    """Load the 8x8 digits (1,797 images, 10 classes) shipped with the package.

    Pixel counts 0..16 are scaled to uint8 by ``round(v * 255 / 16)``. The split is fixed and
    shipped with the images: it is scikit-learn's
    ``train_test_split(test_size=0.3, stratify=y, random_state=0)``, giving 1,257 training and 540
    test images. ``mean``/``std`` are computed from the training images on the ``[0, 1]`` scale.

    Returns
    -------
    Dataset
        ``x`` of shape ``(N, 1, 8, 8)``; ``source="bundled"``.

    Raises
    ------
    sparse_reg.errors.CorruptDatasetError
        The shipped file is unreadable or does not match its checksum.
    """
    arrays = _read_shipped()
    x = np.rint(arrays["images"] * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = arrays["labels"].astype(np.int64)
    train, test = arrays["train_index"], arrays["test_index"]
    pixels = x[train].astype(np.float64) / 255.0
    return Dataset(
        name="digits",
        x_train=np.ascontiguousarray(x[train]),
        y_train=y[train],
        x_test=np.ascontiguousarray(x[test]),
        y_test=y[test],
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        mean=(float(pixels.mean()),),
        std=(float(pixels.std()),),
        source="bundled",
    )
