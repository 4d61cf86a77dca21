"""Writers of tiny standard-format dataset files (and broken ones) for the loader tests."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray, *, magic: int | None = None) -> bytes:
    """IDX encoding of a uint8 array (magic ``0x0800 | ndim`` unless overridden)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_file(path: Path, data: bytes) -> Path:
    """Write ``data``, gzipped when ``path`` ends in ``.gz``."""
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_idx_dataset(
    directory: Path, *, n_train: int = 20, n_test: int = 10, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write the four MNIST-layout files; return the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, stem in IDX_STEMS.items():
        write_file(directory / (stem + (".gz" if gz else "")), idx_bytes(arrays[key]))
    return arrays


def write_pickle(path: Path, obj: object, protocol: int = 2) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def write_cifar10(directory: Path, *, per_batch: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a ``cifar-10-batches-py`` layout with ``per_batch`` images per file."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        write_pickle(directory / name, {b"batch_label": b"x", b"data": x, b"labels": y})
        xs.append(x)
        ys.append(y)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(directory / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return {
        "x_train": np.concatenate(xs[:5]),
        "y_train": np.concatenate(ys[:5]),
        "x_test": xs[5],
        "y_test": np.asarray(ys[5]),
    }


def write_cifar100(directory: Path, *, n_train: int = 30, n_test: int = 10) -> None:
    """Write a ``cifar-100-python`` layout (written with protocol 5, unlike the real files)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", n_train), ("test", n_test)):
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            "coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
        }
        write_pickle(directory / name, batch, protocol=5)
    names = [f"class{i}".encode() for i in range(100)]
    write_pickle(directory / "meta", {"fine_label_names": names}, protocol=5)


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def write_malicious_pickle(path: Path) -> Path:
    """A pickle whose loading would call a non-allowed global."""
    return write_pickle(path, {b"data": _Boom()})
