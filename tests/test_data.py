"""Tests of sparse_reg.data loaders on tiny standard-format files, and on real data if present."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from _datafiles import (
    IDX_STEMS,
    idx_bytes,
    write_cifar10,
    write_cifar100,
    write_file,
    write_idx_dataset,
    write_malicious_pickle,
    write_pickle,
)

from sparse_reg import data
from sparse_reg.errors import CorruptDatasetError, DatasetNotFoundError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

# --- IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_loader_roundtrip(tmp_path, name, gz):
    arrays = write_idx_dataset(tmp_path, gz=gz)
    ds = data.load(name, tmp_path, verify=False)
    assert ds.name == name
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train[:, 0], arrays["train_images"])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert ds.y_train.dtype == np.int64
    assert ds.num_classes == len(ds.class_names) == 10
    assert ds.source == str(tmp_path)


def test_mnist_normalisation_constants(tmp_path):
    write_idx_dataset(tmp_path)
    ds = data.load_mnist(tmp_path, verify=False)
    assert ds.mean == (0.1307,) and ds.std == (0.3081,)


def test_idx_checksum_mismatch_needs_verify_false(tmp_path):
    write_idx_dataset(tmp_path)
    target = tmp_path / "train-images-idx3-ubyte.gz"
    with pytest.raises(
        CorruptDatasetError,
        match=r"train-images-idx3-ubyte\.gz: checksum "
        r"mismatch.*expected f68b3c2dcbeaaa9fbdd348bbdeb94873, got [0-9a-f]{32}",
    ):
        data.load_mnist(tmp_path)
    assert target.exists()


def test_fashion_checksum_mismatch_reports_both_digests(tmp_path):
    write_idx_dataset(tmp_path)
    with pytest.raises(CorruptDatasetError, match=r"expected 8d4fb7e6.*SHA-256.*expected c59f468a"):
        data.load_fashion_mnist(tmp_path)


def test_uncompressed_mnist_warns_without_published_checksum(tmp_path):
    write_idx_dataset(tmp_path, gz=False)
    with pytest.warns(UserWarning, match="no published checksum"):
        ds = data.load_mnist(tmp_path)
    assert ds.x_test.shape == (10, 1, 28, 28)


@pytest.mark.parametrize(
    ("key", "payload", "message"),
    [
        ("train_images", idx_bytes(np.zeros((20, 28, 28)), magic=0x0801),
         r"train-images-idx3-ubyte\.gz: wrong IDX magic number 0x00000801, expected 0x00000803"),
        ("train_labels", idx_bytes(np.zeros((20, 28))),
         r"train-labels-idx1-ubyte\.gz: wrong IDX magic number 0x00000802, expected 0x00000801"),
        ("train_images", idx_bytes(np.zeros((20, 28, 28)))[:-5],
         r"declares shape \(20, 28, 28\) \(15680 bytes of data\) but the file holds 15675"),
        ("test_images", idx_bytes(np.zeros((10, 28, 28))) + b"x",
         r"t10k-images-idx3-ubyte\.gz: header declares shape .* holds 7841"),
        ("test_images", idx_bytes(np.zeros((10, 8, 8))), "images are 8x8, expected 28x28"),
        ("test_labels", idx_bytes(np.arange(9)),
         r"holds 10 images but .*t10k-labels-idx1-ubyte\.gz holds 9 labels"),
        ("train_labels", idx_bytes(np.full(20, 12)), r"label 12 out of range \[0, 10\)"),
        ("train_labels", b"\x00\x00", r"too short for an IDX header \(2 bytes\)"),
    ],
)  # fmt: skip
def test_idx_structural_errors(tmp_path, key, payload, message):
    write_idx_dataset(tmp_path)
    write_file(tmp_path / f"{IDX_STEMS[key]}.gz", payload)
    with pytest.raises(CorruptDatasetError, match=message):
        data.load_mnist(tmp_path, verify=False)


def test_truncated_and_non_gzip_files(tmp_path):
    write_idx_dataset(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptDatasetError, match=r"train-images-idx3-ubyte\.gz: cannot be read"):
        data.load_mnist(tmp_path, verify=False)
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(CorruptDatasetError, match="cannot be read as a gzip file"):
        data.load_mnist(tmp_path, verify=False)


def test_idx_missing_directory_and_file(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(
        DatasetNotFoundError,
        match=r"nowhere does not exist.*apt-get install "
        r"dataset-fashion-mnist.*train-images-idx3-ubyte\.gz",
    ):
        data.load_fashion_mnist(missing)
    write_idx_dataset(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        DatasetNotFoundError,
        match=r"t10k-labels-idx1-ubyte\.gz is missing.*"
        r"ossci-datasets",
    ):
        data.load_mnist(tmp_path, verify=False)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not installed at {FASHION_DIR}")
def test_real_fashion_mnist():
    ds = data.load("fashion-mnist")  # verify=True against the published checksums
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 1000))
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    pixels = ds.x_train / 255.0
    assert abs(pixels.mean() - ds.mean[0]) < 5e-4 and abs(pixels.std() - ds.std[0]) < 5e-4


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not installed at {FASHION_DIR}")
def test_real_fashion_mnist_uncompressed_copy_verified(tmp_path):
    stem = IDX_STEMS["test_labels"]
    for key, other in IDX_STEMS.items():
        source = FASHION_DIR / f"{other}.gz"
        if key == "test_labels":
            (tmp_path / stem).write_bytes(gzip.decompress(source.read_bytes()))
        else:
            (tmp_path / f"{other}.gz").symlink_to(source)
    ds = data.load_fashion_mnist(tmp_path)  # content SHA-256 matches
    assert ds.y_test.shape == (10000,)


# --- CIFAR ---------------------------------------------------------------------------------


@pytest.mark.parametrize("point_at", ["itself", "parent"])
def test_cifar10_roundtrip(tmp_path, point_at):
    folder = tmp_path / "cifar-10-batches-py"
    written = write_cifar10(folder)
    ds = data.load("cifar10", folder if point_at == "itself" else tmp_path, verify=False)
    assert ds.x_train.shape == (50, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    np.testing.assert_array_equal(ds.x_train.reshape(50, -1), written["x_train"])
    np.testing.assert_array_equal(ds.y_train, written["y_train"])
    assert ds.class_names[9] == "truck" and ds.num_classes == 10
    assert ds.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=1e-4)
    assert ds.source == str(folder)


def test_cifar100_roundtrip(tmp_path):
    write_cifar100(tmp_path / "cifar-100-python")
    ds = data.load("cifar100", tmp_path, verify=False)
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.num_classes == 100
    assert ds.class_names[0] == "class0"
    assert ds.std == (0.2673, 0.2564, 0.2762)


def test_cifar_checksum_mismatch(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(
        CorruptDatasetError,
        match=r"batches\.meta: checksum mismatch.*expected "
        r"5ff9c542aee3614f3951f8cda6e48888",
    ):
        data.load_cifar10(tmp_path)


def test_cifar_missing(tmp_path):
    with pytest.raises(
        DatasetNotFoundError,
        match=r"cifar-10-batches-py does not exist.*"
        r"cifar-10-python\.tar\.gz.*data_batch_1",
    ):
        data.load_cifar10(tmp_path)
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"data_batch_3 is missing"):
        data.load_cifar10(tmp_path, verify=False)
    (tmp_path / "cifar-100-python").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"cifar-100-python has no meta.*\{train, test, meta\}"):
        data.load_cifar100(tmp_path)


@pytest.mark.parametrize(
    ("writer", "message"),
    [
        (lambda p: p.write_bytes(b"garbage"), r"data_batch_2: not a valid CIFAR python pickle"),
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "not a valid CIFAR python pickle"),
        (write_malicious_pickle, r"refusing to load global (__builtin__|builtins)\.print"),
        (lambda p: write_pickle(p, [1, 2]), "expected a pickled dict, got list"),
        (lambda p: write_pickle(p, {b"labels": [0]}), r"missing key 'data'"),
        (lambda p: write_pickle(p, {b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}),
         r"'data' must be a uint8 array of shape \(N, 3072\)"),
        (lambda p: write_pickle(p, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
         "'labels' must be 2 integers"),
        (lambda p: write_pickle(p, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}),
         r"label 10 out of range \[0, 10\)"),
    ],
)  # fmt: skip
def test_cifar_corrupt(tmp_path, writer, message):
    write_cifar10(tmp_path)
    writer(tmp_path / "data_batch_2")
    with pytest.raises(CorruptDatasetError, match=message):
        data.load_cifar10(tmp_path, verify=False)


def test_cifar_bad_meta(tmp_path):
    write_cifar10(tmp_path)
    write_pickle(tmp_path / "batches.meta", {b"label_names": [b"a", b"b"]})
    with pytest.raises(CorruptDatasetError, match=r"batches\.meta: 'label_names' has 2 names"):
        data.load_cifar10(tmp_path, verify=False)


# --- digits, dispatch, long-tailed ---------------------------------------------------------


def test_digits():
    ds = data.load("digits")
    assert ds.x_train.shape == (1257, 1, 8, 8) and ds.x_test.shape == (540, 1, 8, 8)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.max() == 255
    assert ds.source == "bundled"
    # Stratified: every class's share of the test set is within one image of 30%.
    counts = np.bincount(ds.y_train, minlength=10) + np.bincount(ds.y_test, minlength=10)
    assert np.all(np.abs(np.bincount(ds.y_test) - 0.3 * counts) <= 1)
    again = data.load_digits()
    np.testing.assert_array_equal(again.y_test, ds.y_test)
    assert 0 < ds.mean[0] < 1 and 0 < ds.std[0] < 1


def test_load_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; valid names: digits, mnist"):
        data.load("svhn")
    with pytest.raises(ValueError, match="data_dir must be None"):
        data.load("digits", "/tmp")


def _balanced(n_per_class: int, num_classes: int) -> data.Dataset:
    n = n_per_class * num_classes
    return data.Dataset(
        name="toy",
        x_train=np.zeros((n, 1, 2, 2), np.uint8),
        y_train=np.repeat(np.arange(num_classes), n_per_class).astype(np.int64),
        x_test=np.zeros((3, 1, 2, 2), np.uint8),
        y_test=np.arange(3, dtype=np.int64),
        num_classes=num_classes,
        class_names=tuple(map(str, range(num_classes))),
        mean=(0.5,),
        std=(0.5,),
        source="memory",
    )


def test_long_tailed_exp_counts_cifar10():
    lt = data.long_tailed(_balanced(5000, 10))
    counts = np.bincount(lt.y_train, minlength=10).tolist()
    assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert lt.name == "toy-lt-exp-0.01"
    assert lt.x_train.shape[0] == sum(counts)
    np.testing.assert_array_equal(lt.y_test, np.arange(3))


def test_long_tailed_step_and_seed():
    base = _balanced(500, 100)
    lt = data.long_tailed(base, profile="step", imbalance=0.1, seed=1)
    counts = np.bincount(lt.y_train, minlength=100)
    assert (counts[:50] == 500).all() and (counts[50:] == 50).all()
    exp = np.bincount(data.long_tailed(base).y_train, minlength=100)
    assert exp[0] == 500 and exp[99] == 5
    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1)
    toy = data.Dataset("t", images, np.repeat([0, 1], 10).astype(np.int64), images[:1],
                       np.zeros(1, np.int64), 2, ("a", "b"), (0.5,), (0.5,), "m")  # fmt: skip
    picks = {tuple(data.long_tailed(toy, imbalance=0.3, seed=s).x_train.ravel()) for s in range(4)}
    assert len(picks) > 1  # the seed chooses which images are kept


def test_long_tailed_errors():
    with pytest.raises(ValueError, match="profile must be 'exp' or 'step'"):
        data.long_tailed(_balanced(10, 2), profile="linear")
    with pytest.raises(ValueError, match=r"imbalance must be in \(0, 1\]"):
        data.long_tailed(_balanced(10, 2), imbalance=0.0)
