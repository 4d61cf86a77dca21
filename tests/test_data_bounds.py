"""The loaders read within the sizes the formats declare, and name a wrong kind of file as such."""

from __future__ import annotations

import gzip
import os
import struct
import tracemalloc

import numpy as np
import pytest
from _datafiles import IDX_STEMS, idx_bytes, write_cifar10, write_file, write_idx_dataset

from sparse_reg import data
from sparse_reg.errors import CorruptDatasetError

LABELS = IDX_STEMS["train_labels"]
IMAGES = IDX_STEMS["train_images"]


def test_a_gzip_expanding_past_its_header_is_refused_without_reading_it_whole(tmp_path):
    """A few kB that expand to 64 MiB, behind a header declaring 20 images: refused, read bounded."""
    write_idx_dataset(tmp_path)
    header = idx_bytes(np.zeros((20, 28, 28)))[:16]
    (tmp_path / f"{IMAGES}.gz").write_bytes(gzip.compress(header + bytes(64 << 20), compresslevel=1))
    tracemalloc.start()
    try:
        with pytest.raises(
            CorruptDatasetError,
            match=rf"{IMAGES}\.gz: header declares shape \(20, 28, 28\) \(15680 bytes of data\) but "
            r"the file holds 15681 or more",
        ):
            data.load_mnist(tmp_path, verify=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes allocated to refuse the file"


@pytest.mark.parametrize("gz", [True, False])
def test_overflowing_dimensions_are_refused_naming_the_file(tmp_path, gz):
    """dims (2^31, 2^31, 4) declare 2^64 bytes: no int64 wrap-around, no bare reshape error."""
    write_idx_dataset(tmp_path, gz=gz)
    name = IMAGES + (".gz" if gz else "")
    write_file(tmp_path / name, struct.pack(">IIII", 0x0803, 2**31, 2**31, 4) + bytes(100))
    expected = (
        rf"{name}: declares 18446744073709551632 bytes of contents, more than a gzip file of \d+ "
        "bytes can hold"
        if gz
        else rf"{name}: header declares shape \(2147483648, 2147483648, 4\) "
        r"\(18446744073709551616 bytes of data\) but the file holds 100"
    )
    with pytest.raises(CorruptDatasetError, match=expected):
        data.load_mnist(tmp_path, verify=False)


def _directory(path):
    path.mkdir()


def _fifo(path):
    os.mkfifo(path)


def _dev_zero(path):
    path.symlink_to("/dev/zero")


KINDS = [
    (_directory, "a directory"),
    pytest.param(_fifo, r"a FIFO \(named pipe\)", marks=pytest.mark.skipif(
        not hasattr(os, "mkfifo"), reason="no FIFOs on this system")),
    pytest.param(_dev_zero, "a character device", marks=pytest.mark.skipif(
        not os.path.exists("/dev/zero"), reason="no /dev/zero on this system")),
]  # fmt: skip


@pytest.mark.parametrize(("make", "kind"), KINDS)
def test_a_wrong_kind_of_idx_file_is_named_not_missing(tmp_path, make, kind):
    write_idx_dataset(tmp_path)
    (tmp_path / f"{LABELS}.gz").unlink()
    make(tmp_path / f"{LABELS}.gz")
    with pytest.raises(CorruptDatasetError, match=rf"{LABELS}\.gz is {kind}, expected a regular file"):
        data.load_mnist(tmp_path, verify=False)


@pytest.mark.parametrize(("make", "kind"), KINDS)
def test_a_wrong_kind_of_cifar_file_is_named_not_missing(tmp_path, make, kind):
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_2").unlink()
    make(tmp_path / "data_batch_2")
    with pytest.raises(CorruptDatasetError, match=rf"data_batch_2 is {kind}, expected a regular file"):
        data.load_cifar10(tmp_path, verify=False)


def test_a_file_where_the_data_directory_belongs_is_named(tmp_path):
    target = tmp_path / "mnist"
    target.write_bytes(b"")
    with pytest.raises(CorruptDatasetError, match=r"mnist directory .*mnist is a regular file, expected a directory"):
        data.load_mnist(target)
    (tmp_path / "cifar-10-batches-py").write_bytes(b"")
    with pytest.raises(CorruptDatasetError, match=r"cifar-10-batches-py is a regular file, expected a directory"):
        data.load_cifar10(tmp_path)


def test_with_verify_a_header_larger_than_the_standard_file_is_refused_before_reading(tmp_path):
    """The published file's size bounds what its checksum can match: 10^6 declared images cannot."""
    write_idx_dataset(tmp_path)
    header = struct.pack(">IIII", 0x0803, 1_000_000, 28, 28)
    (tmp_path / f"{IMAGES}.gz").write_bytes(gzip.compress(header + bytes(8 << 20), compresslevel=1))
    with pytest.raises(
        CorruptDatasetError,
        match=rf"{IMAGES}\.gz: header declares 784000016 bytes, more than the 47040016 of the standard file",
    ):
        data.load_mnist(tmp_path)
    # Without verify only the format bounds it: more than deflate can make of these few kB.
    with pytest.raises(CorruptDatasetError, match=r"declares 784000016 bytes of contents, more than a gzip"):
        data.load_mnist(tmp_path, verify=False)
