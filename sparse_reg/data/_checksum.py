"""Checksum verification of the standard dataset files."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorruptDatasetError
from ._files import digest

__all__ = ["Known", "verify"]


@dataclass(frozen=True)
class Known:
    """Published digests of one standard file; a file matching any of them is accepted.

    Attributes
    ----------
    gz_md5 : str or None
        MD5 of the ``.gz`` file as distributed (applies only to a compressed file).
    content_md5 : str or None
        MD5 of the (decompressed) contents.
    content_sha256 : str or None
        SHA-256 of the (decompressed) contents; matches however the file was (re)compressed.
    """

    gz_md5: str | None = None
    content_md5: str | None = None
    content_sha256: str | None = None


def verify(path: Path, content: bytes, known: Known) -> None:
    """Raise :class:`CorruptDatasetError` unless ``path`` matches a published digest.

    When no digest applies (an uncompressed file whose only published checksum is of the
    ``.gz``), a :class:`UserWarning` says that only the structural checks ran.
    """
    checks: list[tuple[str, str, str]] = []
    if path.suffix == ".gz" and known.gz_md5 is not None:
        checks.append(("MD5 of the .gz file", known.gz_md5, digest(path.read_bytes(), "md5")))
    if known.content_md5 is not None:
        checks.append(("MD5", known.content_md5, digest(content, "md5")))
    if known.content_sha256 is not None:
        checks.append(("SHA-256 of the contents", known.content_sha256, digest(content, "sha256")))
    if any(expected == actual for _, expected, actual in checks):
        return
    if not checks:
        warnings.warn(
            f"{path}: no published checksum for the uncompressed file; only the structural "
            "checks were applied (use the .gz file, or pass verify=False to silence this)",
            UserWarning,
            stacklevel=4,
        )
        return
    detail = "; ".join(f"{what}: expected {exp}, got {act}" for what, exp, act in checks)
    raise CorruptDatasetError(
        f"{path}: checksum mismatch, not the standard file ({detail}). "
        "Pass verify=False to load a modified file whose structure is valid."
    )
