"""File access shared by the loaders: reading (gunzipping) and checksums, with clear errors."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

from ..errors import CorruptDatasetError

__all__ = ["digest", "read_bytes"]


def read_bytes(path: Path) -> bytes:
    """Return the (decompressed, for ``.gz``) contents of ``path``.

    Raises
    ------
    CorruptDatasetError
        If the file cannot be read or is not valid gzip.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; truncation surfaces as EOFError.
        raise CorruptDatasetError(f"{path}: cannot be read as {_kind(path)}: {exc}") from exc


def _kind(path: Path) -> str:
    return "a gzip file" if path.suffix == ".gz" else "a file"


def digest(data: bytes, algorithm: str) -> str:
    """Hex digest of ``data`` (``"md5"`` or ``"sha256"``); used for integrity, not security."""
    return hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()
