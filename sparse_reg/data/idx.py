"""Reader for the IDX format of MNIST and Fashion-MNIST."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from ..errors import CorruptDatasetError
from ._files import read_bytes

__all__ = ["declared_size", "header_size", "parse_idx", "read_contents", "read_idx"]


def header_size(ndim: int) -> int:
    """Bytes of an IDX header of ``ndim`` dimensions: the magic number and one uint32 per dimension."""
    return 4 + 4 * ndim


def _header(data: bytes, path: Path, ndim: int) -> tuple[int, ...]:
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
    if len(data) < header_size(ndim):
        raise CorruptDatasetError(f"{path}: truncated IDX header")
    return struct.unpack(f">{ndim}I", data[4 : header_size(ndim)])


def declared_size(data: bytes, path: Path, *, ndim: int) -> int:
    """Total file size (header and payload) that the IDX header at the start of ``data`` declares.

    The product of the dimensions is taken in Python integers, so it cannot overflow: a header of
    dims :math:`(2^{31}, 2^{31}, 4)` declares :math:`2^{64}` bytes, which the payload check then
    refuses, before anything of that size is allocated.
    """
    return header_size(ndim) + math.prod(_header(data, path, ndim))


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
    dims = _header(data, path, ndim)
    expected = declared_size(data, path, ndim=ndim) - header_size(ndim)
    actual = len(data) - header_size(ndim)
    if actual != expected:
        raise CorruptDatasetError(
            f"{path}: header declares shape {dims} ({expected} bytes of data) but the file holds {actual}"
            # A bounded read stops one byte past the declared size: a longer file may hold more.
            + (" or more" if actual > expected else "")
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size(ndim)).reshape(dims).copy()


def read_contents(path: Path, *, ndim: int, standard_size: int | None = None) -> bytes:
    """The (decompressed) bytes of an IDX file, read no further than its header declares.

    Parameters
    ----------
    standard_size : int, optional
        Size of the published file whose checksum will be verified: a header declaring more cannot
        be that file and is refused before the payload is read.
    """

    def bounded(head: bytes) -> int:
        total = declared_size(head, path, ndim=ndim)
        if standard_size is not None and total > standard_size:
            raise CorruptDatasetError(
                f"{path}: header declares {total} bytes, more than the {standard_size} of the "
                "standard file: not the standard file. Pass verify=False to load a modified file "
                "whose structure is valid."
            )
        return total

    return read_bytes(path, declared_size=bounded, header_size=header_size(ndim))


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes; see :func:`parse_idx`."""
    return parse_idx(read_contents(path, ndim=ndim), path, ndim=ndim)
