"""Bounded reading of NumPy ``.npz`` archives, never with ``allow_pickle``.

A ``.npz`` is a zip of ``.npy`` members, and both layers declare sizes that ``numpy.load`` trusts:
a 4 kB deflated member can expand to 4 GiB, and an ``.npy`` header can declare a shape of
:math:`10^{12} \\times 8 \\times 8` bytes, allocated before the data is read. Here every member is
checked before any of its data is read, from its zip entry and its header alone:

* its uncompressed size (``ZipInfo.file_size``) is at most what its compressed bytes can hold
  (the same for a stored member, :data:`~sparse_reg.data._files.MAX_DEFLATE_RATIO` times for a
  deflated one), so reading cannot stop short after the array is allocated;
* the header's shape times its dtype's item size is exactly that size minus the header;
* the arrays' declared sizes sum to at most ``max_bytes`` (:data:`MAX_NPZ_BYTES` by default).

Reading then allocates each array once, of its declared size, and zipfile stops at the entry's
size and checks its CRC.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy

from ..errors import CorruptDatasetError
from ._files import MAX_DATA_BYTES, MAX_DEFLATE_RATIO

__all__ = ["MAX_NPZ_BYTES", "read_npz"]

#: Most bytes of array data (summed over the members, as their headers declare) an archive may hold:
#: 4 GiB, 20 times CIFAR-10 as uint8 and more than the trainer can hold as float64 on most machines.
MAX_NPZ_BYTES = MAX_DATA_BYTES

_Fail = Callable[[str], CorruptDatasetError]

_HEADER_READERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}


def read_npz(path: Path, *, name: str, max_bytes: int = MAX_NPZ_BYTES) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` archive ``path``, by key (the member name less ``.npy``).

    Parameters
    ----------
    path : pathlib.Path
    name : str
        How messages name the file, e.g. ``"--data file 'mine.npz'"``.
    max_bytes : int
        Most bytes of array data the archive may declare in all (see the module docstring for the
        other bounds, checked on each member before its data is read).

    Raises
    ------
    CorruptDatasetError
        The file is not a zip archive (a single ``.npy`` array is named as such), a member is not
        an ``.npy`` array, holds objects, declares a size its zip entry or compressed bytes do not
        match, the arrays declare more than ``max_bytes``, or the data cannot be read.
    """

    def fail(message: str) -> CorruptDatasetError:
        return CorruptDatasetError(f"{name} {message}")

    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            sizes = {info.filename: _declared_bytes(archive, info, fail) for info in infos}
            total = sum(sizes.values())
            if total > max_bytes:
                parts = ", ".join(f"{member} {size}" for member, size in sizes.items())
                raise fail(
                    f"declares {total} bytes of arrays ({parts}), more than the limit of "
                    f"{max_bytes} bytes ({max_bytes / 2**30:g} GiB)"
                )
            return {_key(info.filename): _read_member(archive, info) for info in infos}
    except zipfile.BadZipFile as exc:
        raise fail(_not_a_zip(path, exc)) from None
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, CorruptDatasetError):
            raise
        raise fail(f"is not a readable .npz archive: {exc}") from None


def _key(member: str) -> str:
    return member[: -len(".npy")]


def _not_a_zip(path: Path, exc: Exception) -> str:
    try:
        with path.open("rb") as handle:
            npy.read_magic(handle)
    except (OSError, ValueError):
        return f"is not a readable .npz archive: {exc}"
    return (
        "holds a single array, not a .npz archive of named arrays "
        "(save it with numpy.savez(path, x_train=..., y_train=...))"
    )


def _declared_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo, fail: _Fail) -> int:
    """Bytes of data ``info``'s ``.npy`` header declares, checked against its zip entry."""
    member = f"member {info.filename!r}"
    if not info.filename.endswith(".npy"):
        raise fail(f"has the {member}, which is not a NumPy array (.npy)")
    ratio = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: MAX_DEFLATE_RATIO}.get(info.compress_type)
    if ratio is None:
        raise fail(
            f"has the {member} compressed with zip method {info.compress_type}; "
            "save it with numpy.savez or numpy.savez_compressed (stored or deflated)"
        )
    if info.file_size > ratio * info.compress_size:
        raise fail(
            f"has the {member} declaring {info.file_size} bytes, more than its {info.compress_size} "
            f"compressed bytes can hold (at most {ratio} times as many)"
        )
    with archive.open(info) as handle:
        shape, dtype, header = _header(handle, member, fail)
    if dtype.hasobject:
        raise fail(
            "holds object arrays, which cannot be loaded without running code; store numbers and strings only"
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if header + nbytes != info.file_size:
        raise fail(
            f"has the {member} whose header declares shape {shape} of {dtype} ({nbytes} bytes of "
            f"data), but the member holds {info.file_size - header} bytes after its header"
        )
    return nbytes


def _header(handle: IO[bytes], member: str, fail: _Fail) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and length of the ``.npy`` header at the start of ``handle``."""
    try:
        version = npy.read_magic(handle)
        read = _HEADER_READERS.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        shape, _fortran, dtype = read(handle)
    except ValueError as exc:
        raise fail(f"has the {member}, which is not a valid .npy array: {exc}") from None
    return shape, dtype, handle.tell()


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    # Bounded by the checks above: read_array allocates the declared size, which the entry matches.
    with archive.open(info) as handle:
        return npy.read_array(handle, allow_pickle=False)
