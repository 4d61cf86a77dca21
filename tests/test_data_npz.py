"""``--data`` archives are refused from their declared sizes and labels, before anything is sized by them."""

from __future__ import annotations

import gzip
import io
import re
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy

from sparse_reg.errors import CorruptDatasetError
from sparse_reg.train import userdata


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def _declare_size(path: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size the zip entries of ``member`` declare (local and central)."""
    content = bytearray(path.read_bytes())
    name = member.encode()
    for signature, field in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = content.find(signature)
        while at >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if content[name_at : name_at + len(name)] == name:
                content[at + field : at + field + 4] = struct.pack("<I", size)
            at = content.find(signature, at + 4)
    path.write_bytes(bytes(content))


LABELS = _npy(np.arange(10) % 2)


def _images(n: int = 10) -> bytes:
    return _npy(np.zeros((n, 4, 4), np.uint8))


def test_a_label_far_beyond_the_samples_is_refused_before_sizing_anything(tmp_path):
    """One label of 2**40 in a few kB used 23 GB naming 2**40 classes."""
    labels = np.arange(50) % 10
    labels[30] = 2**40
    path = tmp_path / "label.npz"
    np.savez(path, x_train=np.zeros((50, 8, 8), np.uint8), y_train=labels)
    with pytest.raises(
        CorruptDatasetError,
        match=r"--data file '.*label\.npz': y_train holds the label 1099511627776 \(at index 30\); "
        r"expected labels in \[0, 50\): without class_names there are at most as many classes as "
        r"samples \(50\), and at most 10000; give class_names",
    ):
        userdata.load_npz(path)


def test_labels_are_bounded_by_the_class_names(tmp_path):
    path = tmp_path / "names.npz"
    x, y = np.zeros((4, 3)), np.array([0, 1, 1, 0])
    np.savez(
        path, x_train=x, y_train=y, x_test=x, y_test=np.array([0, 1, 2, 2**40]), class_names=["a", "b", "c"]
    )
    with pytest.raises(
        CorruptDatasetError,
        match=r"y_test holds the label 1099511627776 \(at index 3\); expected labels in \[0, 3\): "
        "class_names has 3 names",
    ):
        userdata.load_npz(path)
    np.savez(path, x_train=x, y_train=y, class_names=np.array(["c"] * (userdata.MAX_CLASSES + 1)))
    with pytest.raises(
        CorruptDatasetError, match=r"class_names has 10001 names; expected at most 10000 classes"
    ):
        userdata.load_npz(path)


def test_a_deflated_member_past_the_limit_is_refused_before_it_is_inflated(tmp_path):
    """16 MiB of zeros in 16 kB (the 4 GiB bomb, scaled to a test's limit): refused from its entry."""
    path = _zip(
        tmp_path / "bomb.npz",
        {"x_train.npy": _npy(np.zeros((16, 1024, 1024), np.uint8)), "y_train.npy": _npy(np.zeros(16, int))},
        zipfile.ZIP_DEFLATED,
    )
    assert path.stat().st_size < 64 << 10
    tracemalloc.start()
    try:
        with pytest.raises(
            CorruptDatasetError,
            match=r"bomb\.npz' declares 16777344 bytes of arrays \(x_train\.npy 16777216, y_train\.npy 128\), "
            r"more than the limit of 8388608 bytes \(0\.0078125 GiB\)",
        ):
            userdata.load_npz(path, max_bytes=8 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated to refuse the file"
    assert userdata.MAX_NPZ_BYTES == 4 << 30


SHAPE_BOMB_REFUSAL = (
    "has the member 'x_train.npy' whose header declares shape (1000000000000, 8, 8) of uint8 "
    "(64000000000000 bytes of data), but the member holds 640 bytes after its header"
)


def _shape_bomb(directory: Path) -> Path:
    members = {"x_train.npy": _header((10**12, 8, 8)) + bytes(640), "y_train.npy": LABELS}
    return _zip(directory / "shape.npz", members)


def test_a_header_declaring_more_than_the_member_holds_is_refused(tmp_path):
    """(10**12, 8, 8) declared over 640 bytes used to ask for 58 TiB."""
    path = _shape_bomb(tmp_path)
    with pytest.raises(CorruptDatasetError, match=re.escape(f"shape.npz' {SHAPE_BOMB_REFUSAL}")):
        userdata.load_npz(path)


def test_an_entry_declaring_more_than_its_compressed_bytes_hold_is_refused(tmp_path):
    """Header and zip entry agree on 1 GiB, but the 100 stored bytes cannot hold it."""
    header = _header((1 << 30,))
    path = _zip(tmp_path / "lie.npz", {"x_train.npy": header + bytes(100), "y_train.npy": LABELS})
    _declare_size(path, "x_train.npy", len(header) + (1 << 30))
    with pytest.raises(
        CorruptDatasetError,
        match=rf"lie\.npz' has the member 'x_train\.npy' declaring {len(header) + (1 << 30)} bytes, more "
        rf"than its {len(header) + 100} compressed bytes can hold \(at most 1 times as many\)",
    ):
        userdata.load_npz(path)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"x_train.npy": _images(), "y_train.npy": LABELS, "notes.txt": b"hi"},
         r"has the member 'notes\.txt', which is not a NumPy array \(\.npy\)"),
        ({"x_train.npy": b"\x93NUMPY\x03\x00" + _header((10, 4, 4))[8:], "y_train.npy": LABELS},
         r"has the member 'x_train\.npy', which is not a valid \.npy array: unsupported \.npy format "
         r"version 3\.0"),
        ({"x_train.npy": _images()[:-1], "y_train.npy": LABELS},
         r"whose header declares shape \(10, 4, 4\) of uint8 \(160 bytes of data\), but the member "
         "holds 159 bytes"),
    ],
    ids=["not-npy", "npy-version", "short"],
)  # fmt: skip
def test_malformed_members_are_named(tmp_path, members, message):
    with pytest.raises(CorruptDatasetError, match=message):
        userdata.load_npz(_zip(tmp_path / "bad.npz", members))


def test_single_arrays_and_other_files_are_named(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(CorruptDatasetError, match=r"holds a single array, not a \.npz archive"):
        userdata.load_npz(tmp_path / "one.npy")
    (tmp_path / "g.npz").write_bytes(gzip.compress(b"x"))
    with pytest.raises(CorruptDatasetError, match=r"g\.npz' is not a readable \.npz archive"):
        userdata.load_npz(tmp_path / "g.npz")


@pytest.fixture(scope="module")
def main():
    """The trainer's entry point (importing torch takes seconds, once)."""
    pytest.importorskip("torch")
    from sparse_reg.train import main

    return main


def test_a_refused_archive_exits_2_with_one_line(tmp_path, capsys, main):
    path = _shape_bomb(tmp_path)
    try:
        code = main(["--data", str(path), "--epochs", "1", "--out", str(tmp_path / "run")])
    except SystemExit as exc:
        code = int(exc.code)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        f"python -m sparse_reg.train: error: --data file {str(path)!r} {SHAPE_BOMB_REFUSAL}"
    ]
