"""The loaders read within the sizes the formats declare, and name a wrong kind of file as such."""

from __future__ import annotations

import gzip
import os
import pickle
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


# --- CIFAR pickles: the work is bounded by the file's size -------------------------------------


def _shared_levels(levels: int, width: int, build: bytes) -> bytes:
    """Protocol-2 opcodes leaving on the stack ``levels`` nested containers of ``width`` references
    each to the level below (memo slots 0..levels-1): ``width**levels`` leaves from a few bytes.
    ``build`` closes a marked sequence: ``b"l"`` (LIST) or ``b"t"`` (TUPLE)."""
    ops = b"(" + b"K\x00" * width + build + b"q\x00"
    for level in range(1, levels):
        ops += b"0(" + (b"h" + bytes([level - 1])) * width + build + b"q" + bytes([level])
    return ops


def _with_item(obj: dict, key: bytes, value_ops: bytes, *, key_ops: bytes | None = None) -> bytes:
    """A protocol-2 pickle of the dict ``obj`` with one more item, its value given as opcodes."""
    short_binstring = b"U" + bytes([len(key)]) + key  # unpickled as bytes with encoding="bytes"
    return pickle.dumps(obj, protocol=2)[:-1] + (key_ops or short_binstring) + value_ops + b"s."


def _batch(n: int = 10) -> dict:
    return {b"batch_label": b"x", b"data": np.zeros((n, 3072), np.uint8)}


def test_a_memo_bomb_in_the_labels_is_refused_before_it_is_walked(tmp_path):
    """10^6 labels from 30 references (10^12 hung the loader): more elements than bytes."""
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(_with_item(_batch(), b"labels", _shared_levels(6, 10, b"l")))
    with pytest.raises(
        CorruptDatasetError,
        match=r"data_batch_1: not a valid CIFAR python pickle: it expands to more than \d+ elements "
        r"\(one per byte of the file\) through shared references",
    ):
        data.load_cifar10(tmp_path, verify=False)


def test_a_memo_bomb_in_the_class_names_is_refused(tmp_path):
    write_cifar10(tmp_path)
    bomb = _with_item({b"num_vis": 3072}, b"label_names", _shared_levels(12, 10, b"l"))
    (tmp_path / "batches.meta").write_bytes(bomb)
    with pytest.raises(CorruptDatasetError, match=r"batches\.meta: .* it expands to more than \d+ elements"):
        data.load_cifar10(tmp_path, verify=False)


def test_a_dict_key_that_would_take_long_to_hash_is_refused_before_hashing(tmp_path):
    """A tuple key of 10^6 shared leaves: CPython hashes tuples without caching, walking them all."""
    write_cifar10(tmp_path)
    key_ops = _shared_levels(6, 10, b"t")
    (tmp_path / "data_batch_1").write_bytes(_with_item(_batch(), b"", b"K\x00", key_ops=key_ops))
    with pytest.raises(CorruptDatasetError, match=r"data_batch_1: .* it has a dict key of type tuple"):
        data.load_cifar10(tmp_path, verify=False)


class _EmptyArray:
    """Pickles as ``_reconstruct(ndarray, shape, "B")``: an array allocated, and never filled."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, self.shape, "B"))


@pytest.mark.parametrize("via", ["_reconstruct", "ndarray"])
def test_an_empty_array_larger_than_the_file_is_refused_before_allocating(tmp_path, via):
    write_cifar10(tmp_path)
    batch = {b"batch_label": b"x", b"labels": [0] * 1000}
    if via == "_reconstruct":
        content = pickle.dumps({**batch, b"data": _EmptyArray((1000, 3072))}, protocol=2)
    else:  # numpy.ndarray((1000, 3072), "B") called directly
        call = b"cnumpy\nndarray\nM\xe8\x03M\x00\x0c\x86U\x01B\x86R"
        content = _with_item(batch, b"data", call)
    (tmp_path / "data_batch_1").write_bytes(content)
    with pytest.raises(
        CorruptDatasetError,
        match=rf"data_batch_1: .* it declares an array of shape \(1000, 3072\) and dtype uint8 \(3072000 "
        rf"bytes\), more than the {len(content)} bytes of the whole file",
    ):
        data.load_cifar10(tmp_path, verify=False)


def _cycle() -> list:
    loop: list = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("content", "refusal"),
    [
        (pickle.dumps({**_batch(), b"labels": {0, 1}}, protocol=4), "it holds a set"),
        (pickle.dumps({**_batch(), b"labels": _cycle()}, protocol=2), "it holds a reference cycle"),
        (pickle.dumps({**_batch(), b"labels": np.array([0], dtype=object)}, protocol=2),
         "it holds an object array"),
        (_with_item(_batch(), b"labels", b"c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R"),
         "it calls _codecs.encode with encoding 'rot13'; only latin1 is allowed"),
    ],
    ids=["set", "cycle", "object-array", "codec"],
)  # fmt: skip
def test_what_a_cifar_batch_never_holds_is_refused(tmp_path, content, refusal):
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(content)
    with pytest.raises(CorruptDatasetError, match=rf"data_batch_1: not a valid CIFAR python pickle: {refusal}"):
        data.load_cifar10(tmp_path, verify=False)


# --- declared sizes against the file and the limit ----------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_the_largest_idx_header_over_a_few_bytes_is_refused_naming_the_file(tmp_path, gz):
    """dims (2^32 - 1, 8, 8), 275 GB, over 640 bytes: refused from the header, nothing allocated."""
    write_idx_dataset(tmp_path, gz=gz)
    name = IMAGES + (".gz" if gz else "")
    write_file(tmp_path / name, struct.pack(">IIII", 0x0803, 2**32 - 1, 8, 8) + bytes(640))
    expected = (
        rf"{name}: declares 274877906896 bytes of contents, more than a gzip file of \d+ bytes can hold"
        if gz
        else rf"{name}: header declares shape \(4294967295, 8, 8\) \(274877906880 bytes of data\) but "
        "the file holds 640"
    )
    with pytest.raises(CorruptDatasetError, match=expected):
        data.load_mnist(tmp_path, verify=False)


@pytest.mark.parametrize("gz", [True, False])
def test_contents_past_the_limit_are_refused_before_they_are_read(tmp_path, monkeypatch, gz):
    """The 4 GiB limit, scaled to 1 MiB: 2000 declared images (1.5 MB) are refused from the header."""
    monkeypatch.setattr("sparse_reg.data._files.MAX_DATA_BYTES", 1 << 20)
    write_idx_dataset(tmp_path, gz=gz)
    name = IMAGES + (".gz" if gz else "")
    write_file(tmp_path / name, idx_bytes(np.zeros((2000, 28, 28))))
    verb = "declares" if gz else "holds"
    with pytest.raises(
        CorruptDatasetError,
        match=rf"{name}: {verb} 1568016 bytes of contents, more than the limit of 1048576 bytes "
        r"\(0\.000976562 GiB\) a dataset file may have",
    ):
        data.load_mnist(tmp_path, verify=False)
