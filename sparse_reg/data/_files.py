"""File access shared by the loaders: opening, bounded reading (gunzipping) and checksums.

Every read is bounded before any memory is allocated: an uncompressed file by its size on disk, a
gzip file by the size its format declares (an IDX header) and never beyond what deflate can produce
from it, so a small file that expands to gigabytes is refused instead of exhausting memory. Whatever
the file, its contents may be at most :data:`MAX_DATA_BYTES` (4 GiB, about 90 times the largest
standard file a loader reads).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..errors import CorruptDatasetError, DatasetNotFoundError

__all__ = ["MAX_DATA_BYTES", "MAX_DEFLATE_RATIO", "digest", "file_kind", "read_bytes"]

#: Deflate's largest expansion: one compressed byte yields at most 1032 output bytes (RFC 1951
#: length codes of 258 bytes at 2 bits each, plus the block overhead).
MAX_DEFLATE_RATIO = 1032

#: Most bytes of contents (decompressed, or declared by a header) a dataset file may have: 4 GiB.
MAX_DATA_BYTES = 4 << 30

_CHUNK = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(path: Path) -> str | None:
    """What ``path`` is (``"a regular file"``, ``"a directory"``, ``"a FIFO (named pipe)"``, ...), or
    ``None`` when nothing is there."""
    try:
        return _describe(os.stat(path).st_mode)
    except OSError:
        return None


def _describe(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_bytes(
    path: Path, *, declared_size: Callable[[bytes], int] | None = None, header_size: int = 0
) -> bytes:
    """Return the (decompressed, for ``.gz``) contents of the regular file ``path``, read within bounds.

    Parameters
    ----------
    path : pathlib.Path
    declared_size : callable, optional
        Given the first ``header_size`` bytes of the contents, the total size in bytes the format
        declares (raising :class:`CorruptDatasetError` on a malformed header). Reading stops one
        byte past it, so the caller sees that a longer file is longer (and memory stays bounded by
        the declared size however far a gzip file would expand).
    header_size : int
        Length of the header ``declared_size`` reads.

    Raises
    ------
    DatasetNotFoundError
        ``path`` does not exist.
    CorruptDatasetError
        ``path`` is a directory, FIFO, device or other non-regular file; it cannot be read or is
        not valid gzip; with ``declared_size``, it declares more than a gzip file of its size can
        hold (:data:`MAX_DEFLATE_RATIO` times its size); or its contents (as declared, or as read)
        exceed :data:`MAX_DATA_BYTES`.
    """
    gz = path.suffix == ".gz"
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before its kind is checked.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path} does not exist") from None
    except OSError as exc:
        raise CorruptDatasetError(f"{path}: cannot be opened: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    kind = _describe(info.st_mode)
    if kind != "a regular file":
        os.close(fd)
        raise CorruptDatasetError(f"{path} is {kind}, expected a regular file")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as raw:
        # Never more than the file can yield: its size, or deflate's largest expansion of it.
        limit = info.st_size * MAX_DEFLATE_RATIO + header_size if gz else info.st_size
        try:
            stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw  # type: ignore[assignment]
            head = _read_up_to(stream, header_size) if declared_size is not None else b""
            if declared_size is not None:
                total = declared_size(head)
                if gz and total > limit:
                    raise CorruptDatasetError(
                        f"{path}: declares {total} bytes of contents, more than a gzip file of "
                        f"{info.st_size} bytes can hold (at most {MAX_DEFLATE_RATIO} times its size)"
                    )
                limit = total
            if not gz:  # what is read of it: its size on disk, or less where a header says so
                size = min(limit, info.st_size)
                _check_limit(path, size, f"holds {size} bytes")
            elif declared_size is not None:
                _check_limit(path, limit, f"declares {limit} bytes")
            # Without a declared size a gzip file is read no further than one byte past the limit.
            rest = _read_up_to(stream, min(limit, MAX_DATA_BYTES) + 1 - len(head))
        except (OSError, EOFError, zlib.error) as exc:
            # gzip.BadGzipFile is an OSError; truncation surfaces as EOFError.
            raise CorruptDatasetError(f"{path}: cannot be read as {_kind(path)}: {exc}") from exc
    _check_limit(path, len(head) + len(rest), f"holds more than {MAX_DATA_BYTES} bytes")
    return head + rest


def _check_limit(path: Path, size: int, amount: str) -> None:
    """Refuse ``size`` bytes of contents over :data:`MAX_DATA_BYTES`; ``amount`` says how many."""
    if size > MAX_DATA_BYTES:
        raise CorruptDatasetError(
            f"{path}: {amount} of contents, more than the limit of {MAX_DATA_BYTES} bytes "
            f"({MAX_DATA_BYTES / 2**30:g} GiB) a dataset file may have"
        )


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """At most ``size`` bytes, fewer only at the end of the stream; memory grows with what is read."""
    parts, left = [], size
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _kind(path: Path) -> str:
    return "a gzip file" if path.suffix == ".gz" else "a file"


def digest(data: bytes, algorithm: str) -> str:
    """Hex digest of ``data`` (``"md5"`` or ``"sha256"``); used for integrity, not security."""
    return hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()
