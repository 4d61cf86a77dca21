"""Reader for the IDX format of MNIST and Fashion-MNIST."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import CorruptDatasetError
from ._files import read_bytes

__all__ = ["parse_idx", "read_idx"]


def parse_idx(data: bytes, path: Path, *, ndim: int) -> np.ndarray:
    """Parse IDX bytes into an array, checking the header against the payload.

    Parameters
    ----------
    data : bytes
        Uncompressed file contents.
    path : pathlib.Path
        File name used in error messages.
    ndim : int
        Expected number of dimensions (3 for images, 1 for labels); unsigned bytes are expected.

    Raises
    ------
    CorruptDatasetError
        Wrong magic number, wrong dimensionality, or a payload length that disagrees with the
        header.
    """
    # Bytes 0-1 are zero, byte 2 is the type code (0x08: unsigned byte), byte 3 the rank.
    expected_magic = 0x0800 | ndim
    if len(data) < 4:
        raise CorruptDatasetError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise CorruptDatasetError(
            f"{path}: wrong IDX magic number 0x{magic:08X}, expected 0x{expected_magic:08X} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDatasetError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(data) - header
    if actual != expected:
        raise CorruptDatasetError(
            f"{path}: header declares shape {dims} ({expected} bytes of data) but the file holds {actual}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes; see :func:`parse_idx`."""
    return parse_idx(read_bytes(path), path, ndim=ndim)
