"""MNIST and Fashion-MNIST from their four standard IDX files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorruptDatasetError, DatasetNotFoundError
from ._checksum import Known, verify
from ._dataset import Dataset
from ._files import file_kind
from .idx import header_size, parse_idx, read_contents

__all__ = ["FASHION_MNIST_DIR", "MNIST_DIR", "load_fashion_mnist", "load_mnist"]

#: Default directory of Fashion-MNIST (Debian package ``dataset-fashion-mnist``).
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Default directory of MNIST.
MNIST_DIR = Path("/usr/share/datasets/mnist")

_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: Images in each split of the standard files (MNIST and Fashion-MNIST alike).
_STANDARD_COUNT = {"train": 60_000, "test": 10_000}


def _standard_size(key: str) -> int:
    """Bytes of the standard (uncompressed) IDX file ``key``: header, then one byte per pixel or label."""
    images = key.endswith("images")
    per_item = 28 * 28 if images else 1
    return header_size(3 if images else 1) + _STANDARD_COUNT[key.split("_")[0]] * per_item


@dataclass(frozen=True)
class _Spec:
    name: str
    default_dir: Path
    known: dict[str, Known]
    class_names: tuple[str, ...]
    mean: float
    std: float
    how_to_get: str


_MNIST = _Spec(
    name="mnist",
    default_dir=MNIST_DIR,
    known={
        "train_images": Known(gz_md5="f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train_labels": Known(gz_md5="d53e105ee54ea40749a09fcbcd1e9432"),
        "test_images": Known(gz_md5="9fb629c4189551a2d022fa330f9573f3"),
        "test_labels": Known(gz_md5="ec29112dd5afa0611ce80d1b7f02629c"),
    },
    class_names=tuple(str(d) for d in range(10)),
    mean=0.1307,
    std=0.3081,
    how_to_get="download the four .gz files from https://ossci-datasets.s3.amazonaws.com/mnist/ "
    "(mirror of http://yann.lecun.com/exdb/mnist/)",
)

_FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_FASHION = _Spec(
    name="fashion-mnist",
    default_dir=FASHION_MNIST_DIR,
    known={
        "train_images": Known(
            gz_md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            content_sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        "train_labels": Known(
            gz_md5="25c81989df183df01b3e8a0aad5dffbe",
            content_sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        "test_images": Known(
            gz_md5="bef4ecab320f06d8554ea6380940ec79",
            content_sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        "test_labels": Known(
            gz_md5="bb300cfdad3c16e7a12a480ee83cd310",
            content_sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    },
    class_names=_FASHION_NAMES,
    mean=0.2860,
    std=0.3530,
    how_to_get="run `apt-get install dataset-fashion-mnist` (installs to "
    f"{FASHION_MNIST_DIR}) or download the four .gz files from "
    "https://github.com/zalandoresearch/fashion-mnist (data/fashion/)",
)


def load_mnist(data_dir: str | Path | None = None, *, verify: bool = True) -> Dataset:
    """Load MNIST from the four standard IDX files.

    Parameters
    ----------
    data_dir : str or path, optional
        Directory holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
        ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (or the same names
        without ``.gz``). Defaults to ``/usr/share/datasets/mnist``.
    verify : bool
        Check each file against its published MD5 (of the ``.gz``). Structural checks (magic
        number, dimensions, length, label range, matching counts) always apply. Uncompressed
        files have no published checksum and load with a warning.

    Returns
    -------
    Dataset
        ``x`` of shape ``(N, 1, 28, 28)``; ``mean=(0.1307,)``, ``std=(0.3081,)`` (the paper's).

    Raises
    ------
    DatasetNotFoundError
        The directory or a file is missing.
    CorruptDatasetError
        A file is truncated, malformed, or (with ``verify``) not the standard file; a directory,
        FIFO or device stands where a file belongs; or a file holds (or, gzipped, expands to) more
        than its IDX header declares. Reading stops one byte past the declared size; a header
        declaring more than a gzip file can expand to, or (with ``verify``) more than the standard
        file holds, is refused before the payload is read.
    """
    return _load(_MNIST, data_dir, verify)


def load_fashion_mnist(data_dir: str | Path | None = None, *, verify: bool = True) -> Dataset:
    """Load Fashion-MNIST from the four standard IDX files.

    Same layout and checks as :func:`load_mnist`. Defaults to ``/usr/share/datasets/fashion-mnist``
    (Debian package ``dataset-fashion-mnist``). With ``verify``, a ``.gz`` file is accepted when its
    MD5 is the published one or its decompressed contents have the published SHA-256 (so a
    re-compressed copy, as in the Debian package, is recognised); uncompressed files are checked
    by content SHA-256. Normalisation constants are the standard ``mean=(0.2860,)``,
    ``std=(0.3530,)``.
    """
    return _load(_FASHION, data_dir, verify)


def _load(spec: _Spec, data_dir: str | Path | None, check: bool) -> Dataset:
    directory = Path(data_dir).expanduser() if data_dir is not None else spec.default_dir
    layout = ", ".join(f"{stem}.gz" for stem in _STEMS.values())
    kind = file_kind(directory)
    if kind not in (None, "a directory"):
        raise CorruptDatasetError(f"{spec.name} directory {directory} is {kind}, expected a directory")
    if not directory.is_dir():
        raise DatasetNotFoundError(
            f"{spec.name} directory {directory} does not exist. To get the data, "
            f"{spec.how_to_get}. Expected layout: {directory}/{{{layout}}} "
            "(uncompressed names also accepted)."
        )
    arrays: dict[str, np.ndarray] = {}
    for key, stem in _STEMS.items():
        path = _find(directory, stem, spec, layout)
        ndim = 3 if key.endswith("images") else 1
        content = read_contents(path, ndim=ndim, standard_size=_standard_size(key) if check else None)
        if check:
            verify(path, content, spec.known[key])
        arrays[key] = parse_idx(content, path, ndim=ndim)
    splits = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        image_path = _find(directory, _STEMS[f"{split}_images"], spec, layout)
        label_path = _find(directory, _STEMS[f"{split}_labels"], spec, layout)
        if images.shape[1:] != (28, 28):
            raise CorruptDatasetError(
                f"{image_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28"
            )
        if images.shape[0] != labels.shape[0]:
            raise CorruptDatasetError(
                f"{image_path} holds {images.shape[0]} images but {label_path} holds {labels.shape[0]} labels"
            )
        if labels.size and labels.max() >= len(spec.class_names):
            raise CorruptDatasetError(
                f"{label_path}: label {int(labels.max())} out of range [0, {len(spec.class_names)})"
            )
        splits[split] = (images[:, None], labels.astype(np.int64))
    return Dataset(
        name=spec.name,
        x_train=splits["train"][0],
        y_train=splits["train"][1],
        x_test=splits["test"][0],
        y_test=splits["test"][1],
        num_classes=len(spec.class_names),
        class_names=spec.class_names,
        mean=(spec.mean,),
        std=(spec.std,),
        source=str(directory),
    )


def _find(directory: Path, stem: str, spec: _Spec, layout: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if os.path.lexists(directory / name):
            # Anything there is the file meant; the reader says if it is a directory, FIFO, ...
            return directory / name
    raise DatasetNotFoundError(
        f"{spec.name} file {directory / (stem + '.gz')} is missing (nor is {stem} there). "
        f"To get the data, {spec.how_to_get}. Expected layout: {directory}/{{{layout}}}."
    )
